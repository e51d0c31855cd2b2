"""What a model's worked chains get right, step by step: the diagnostics behind an accuracy.

For the arithmetic task (rlscale.arith) a greedy completion either answers bare ("#### N") or
works the chain out, one line per step, "[quote: ]a op b = c". A step can go wrong in three ways
that call for different skills: the operand is not the problem's (copying: the k-th step's
operand is the (k+1)-th number of the question, stories and expressions alike), the operand
is a number-word's and not its value (recall: a story with a lexicon says some operands as
words, "She finds finoba more", knowledge the model holds or not), or c is not a op b
(arithmetic). Pure: parses completions.jsonl records; imports no models.

    accuracy(rows) -> (accuracy, its binomial SE, problems) of the first 0-shot completions
    parse_step(line) -> (a, op, b, c) of a worked step line, or None
    chain_stats(rows, words) -> {"problems", "bare_expr", "steps", "operand_right",
                                 "word_steps", "word_right", "arithmetic_right",
                                 "stories_right", "expr_right", "ceiling",
                                 "level_<L>_<style>" per cell, "cell_problems"}
    answer_styles(rows) -> {"samples", "worked_share", "right_worked", "right_bare",
                            "worked_advantage"}

The second reads sampled completions (pass@k, at the rollout temperature): how often a model
works an expression out rather than answering bare, and how often each kind is right. RL can
gain by moving a model from guessing to working only where working is right more often: the
worked advantage (docs/study.md, session 10).
"""

from __future__ import annotations

import math
import re

from rlscale.arith import question_operands, question_style

_STEP = re.compile(r"(?:.*: )?(\d{1,6}) ([-+*]) (\d{1,6}) = (\d{1,7})$")
_MAX_LINES = 64  # a completion is bounded by max_new_tokens; this bounds the parse regardless


def is_bare(completion: str) -> bool:
    """A completion that answers without working ("#### N"): the corpus's bare form."""
    return completion.lstrip().startswith("####")


def accuracy(rows: list[dict], check: str = "custom_flexible") -> tuple[float, float, int]:
    """(accuracy, binomial SE, problems) of the first completion of each 0-shot row scored by
    `check`: a greedy eval's number with its SE (nan, nan, 0 for no rows)."""
    x = [float(r["scores"][check][0]) for r in rows
         if r.get("shots", 0) == 0 and (r.get("scores") or {}).get(check)]
    if not x:
        return math.nan, math.nan, 0
    p = sum(x) / len(x)
    return p, math.sqrt(p * (1 - p) / len(x)), len(x)


def parse_step(line: str) -> tuple[int, str, int, int] | None:
    """(a, op, b, c) of a worked step line "[quote: ]a op b = c", None for any other line."""
    m = _STEP.match(line.strip()[:200])
    return (int(m[1]), m[2], int(m[3]), int(m[4])) if m else None


def chain_stats(rows: list[dict], check: str = "custom_flexible",
                words: dict[str, int] | None = None) -> dict:
    """Shares over the 0-shot completions of rows (the first completion of each problem):
    bare_expr: expressions answered bare; of the parsed step lines of worked completions,
    operand_right: those whose operand said in digits is copied right; word_right: those whose
    operand is a number-word (arith.question_operands) and holds its value in `words` (the
    task's lexicon, arith.word_values; None without it or without such steps); arithmetic_right:
    those computing right; and, where rows are scored by `check`, accuracy by style
    (_style_accuracy)."""
    probs = bare = n_expr = steps = digit_steps = operand = word_steps = recalled = arith = 0
    for r in rows:
        if r.get("shots", 0) != 0 or not r.get("completions"):
            continue
        probs += 1
        text = r["completions"][0].strip()
        if question_style(r["question"]) == "expr":
            n_expr += 1
            if is_bare(text):
                bare += 1
                continue
        operands = question_operands(r["question"])
        for k, line in enumerate(text.split("\n")[:_MAX_LINES]):
            step = parse_step(line)
            if step is None:
                continue
            a, op, b, c = step
            steps += 1
            want = operands[k + 1] if k + 1 < len(operands) else None
            if isinstance(want, str):  # a number-word: recalled, not copied
                word_steps += 1
                recalled += words is not None and words.get(want) == b
            else:
                digit_steps += 1
                operand += want is not None and b == want
            arith += c == {"+": a + b, "-": a - b, "*": a * b}[op]
    share = lambda x, n: x / n if n else None  # noqa: E731
    return {"problems": probs, "bare_expr": share(bare, n_expr), "steps": steps,
            "operand_right": share(operand, digit_steps), "word_steps": word_steps,
            "word_right": share(recalled, word_steps) if words else None,
            "arithmetic_right": share(arith, steps), **_style_accuracy(rows, check)}


def _style_accuracy(rows: list[dict], check: str) -> dict:
    """Accuracy of the first 0-shot completion on stories and on expressions, and the ceiling:
    the accuracy with every story right and the expressions as answered. Greedy, it is as high
    as a rung could score by working its stories better alone: the room above it (every pilot
    of docs/study.md, session 13, at the edge's budget had a ceiling of 0.61-0.65). Where rows
    carry a level, also each (level, style) cell's accuracy, `level_<L>_<style>`, and its
    problem count in `cell_problems`: a level's accuracy mixes the two styles."""
    right: dict[str, list[float]] = {"words": [], "expr": []}
    cells: dict[str, list[float]] = {}
    for r in rows:
        score = (r.get("scores") or {}).get(check)
        if r.get("shots", 0) == 0 and score:
            style = question_style(r["question"])
            right[style].append(float(score[0]))
            if r.get("level") is not None:
                cells.setdefault(f"level_{r['level']}_{style}", []).append(float(score[0]))
    n = len(right["words"]) + len(right["expr"])
    mean = lambda x: sum(x) / len(x) if x else None  # noqa: E731
    return {"stories_right": mean(right["words"]), "expr_right": mean(right["expr"]),
            "ceiling": (len(right["words"]) + sum(right["expr"])) / n if n else None,
            **{k: mean(v) for k, v in cells.items()},
            "cell_problems": {k: len(v) for k, v in cells.items()}}


def mean_stats(stats: list[dict]) -> dict | None:
    """The seed mean of several chain_stats (None where no seed has the share)."""
    if not stats:
        return None
    out = {}
    cells = sorted({k for s in stats for k in s if k.startswith("level_")})
    for key in ("bare_expr", "operand_right", "word_right", "arithmetic_right", "stories_right",
                "expr_right", "ceiling", *cells):
        vals = [s[key] for s in stats if s.get(key) is not None]
        out[key] = sum(vals) / len(vals) if vals else None
    out["steps"] = sum(s["steps"] for s in stats)
    out["word_steps"] = sum(s.get("word_steps", 0) for s in stats)
    out["cell_problems"] = stats[0].get("cell_problems", {})  # the same problems in every seed
    return out


def answer_styles(rows: list[dict], check: str = "custom_flexible", style: str = "expr") -> dict:
    """Over every sampled completion of the 0-shot questions of `style` (expr | words) in rows
    (scored by `check`): the share worked out, the accuracy of worked and of bare answers, and
    the worked advantage (their difference; None where either kind is missing)."""
    worked = bare = right_worked = right_bare = 0
    for r in rows:
        if r.get("shots", 0) != 0 or question_style(r["question"]) != style:
            continue
        for text, score in zip(r.get("completions") or [], (r.get("scores") or {}).get(check, [])):
            if is_bare(text):
                bare, right_bare = bare + 1, right_bare + score
            else:
                worked, right_worked = worked + 1, right_worked + score
    rw = right_worked / worked if worked else None
    rb = right_bare / bare if bare else None
    return {"samples": worked + bare,
            "worked_share": worked / (worked + bare) if worked + bare else None,
            "right_worked": rw, "right_bare": rb,
            "worked_advantage": rw - rb if rw is not None and rb is not None else None}


def mean_styles(stats: list[dict]) -> dict | None:
    """The seed mean of several answer_styles (None where no seed has the share)."""
    if not stats:
        return None
    out = {"samples": sum(s["samples"] for s in stats)}
    for key in ("worked_share", "right_worked", "right_bare", "worked_advantage"):
        vals = [s[key] for s in stats if s[key] is not None]
        out[key] = sum(vals) / len(vals) if vals else None
    return out
