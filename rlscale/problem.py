"""The problem record every task source produces (the lowest room of the loop: no imports)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str  # canonical number (GSM8K) or LaTeX expression (MATH)
    solution: str | None = None  # chain of thought ending in "#### N" or a \boxed{} answer
    level: int | None = None  # difficulty level (procedural tasks; "level" in task files)
