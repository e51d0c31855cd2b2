"""The arithmetic task generator: chains of integer steps with a difficulty spectrum.

A problem is a start number and `steps` operations ("What is 12 + 7 * 3 - 40?" or a short
story), solved by a worked chain "12 + 7 = 19 / 19 * 3 = 57 / 57 - 40 = 17 / #### 17". Its
difficulty `level` is its number of steps: every step is one more place to copy an operand and
compute (carries, borrows, products), so a model that gets one step right with probability p gets
a level-L problem right with probability about p^L. A spread of levels therefore turns a model's
per-step skill into a smooth accuracy, and larger models (higher p) score higher on every level;
docs/study.md measures this on the micro ladder. With a `lexicon`, stories also say operands as
number-words of a Zipfian vocabulary ("She gets faligo more"), whose values are knowledge to
recall rather than arithmetic to do.

Specs: 'arith' | 'arith:<preset>' | 'arith:<preset>,key=value,...' | 'arith:key=value,...'
(keys are the fields of ArithConfig, e.g. `arith:min_terms=2,max_terms=7,max_value=99,
ops=+-*,style=mixed`). Generation is seeded and deterministic; rlscale.tasks splits train/test.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from dataclasses import dataclass, fields, replace

from rlscale.errors import UserError
from rlscale.problem import Problem

STYLES = ("words", "expr", "mixed")


@dataclass(frozen=True)
class ArithConfig:
    """Chains of integer steps; every operand and intermediate stays in [0, max_value]."""

    min_terms: int = 2  # numbers in the chain; steps (= the problem's level) = terms - 1
    max_terms: int = 3  # the number of terms is drawn uniformly in [min_terms, max_terms]
    max_value: int = 50
    ops: str = "+-"  # any of "+-*"
    max_factor: int = 3  # multipliers for "*" are 2..max_factor
    style: str = "words"  # "words": a short story; "expr": "What is 3 + 4 - 2?"; "mixed": both
    expr_share: float = 0.5  # "mixed": the share of expressions
    expr_max_terms: int = 0  # expressions: at most this many terms (0: max_terms). Each worked
    # step of an expression restates what is left of it, so its solution grows with the square
    # of the level (6 steps: 132 micro tokens, a story's 91), and long stories stay affordable
    expr_max_value: int = 0  # expressions: numbers up to this (0: max_value), and
    expr_zipf: float = -1.0  # their skew (-1: zipf). Stories and expressions can then differ in
    # difficulty: hard stories that order the ladder, easy expressions whose worked chains even
    # the smallest rung gets right more often than its guesses (docs/study.md, session 13)
    expr_above: int = 0  # expressions: drawn again until some number of the chain (the start,
    # an operand or a result) exceeds this (0: any); a transfer family past the numbers a
    # task's expressions had (docs/study.md, session 27)
    zipf: float = 0.0  # > 0: every number is drawn from its range with P(v) ~ v^-zipf, so that
    # small numbers (and the arithmetic facts among them) are common and large ones rare, as
    # facts are in text; 0: uniform (the draws of earlier versions)
    quote: bool = False  # every step restates what it works on: a story's step its sentence
    # ("He gets 3 more: 14 + 3 = 17", as GSM8K's solutions restate their context in words), an
    # expression's step the expression left ("17 - 5 * 2: 17 - 5 = 12"), so that every operand
    # is copied from text just written rather than found by counting steps
    quote_start: bool = False  # stories: the worked chain opens by restating the first
    # sentence ("Max has 7 apples."), so the first step's start is copied from the line just
    # written, as every later operand is, rather than looked up in the question (session 38)
    lexicon: int = 0  # > 0: the world has this many number-words ("kavo" = 13), and stories
    # say some operands as words ("He gets kavo more: 9 + 13 = 22"), so the worked step must
    # recall the word's value: a table of knowledge, not arithmetic, whose rare entries a
    # larger model may learn from fewer sightings (docs/study.md, session 16)
    lexicon_share: float = 0.5  # stories: the share of + and - steps said as a word, where one fits
    lexicon_zipf: float = 1.0  # the word of frequency rank r occurs with P ~ r^-lexicon_zipf
    lexicon_max: int = 20  # every word is worth a value drawn uniformly in 2..lexicon_max

    def validate(self) -> "ArithConfig":
        if not 2 <= self.min_terms <= self.max_terms <= 20:
            raise UserError(f"arith: need 2 <= min_terms <= max_terms <= 20, got {self}")
        if not 2 <= self.max_value <= 10**6:
            raise UserError(f"arith: max_value must be in 2..1000000, got {self.max_value}")
        if not self.ops or set(self.ops) - set("+-*"):
            raise UserError(f"arith: ops must be a non-empty subset of '+-*', got {self.ops!r}")
        if self.max_factor < 2:
            raise UserError(f"arith: max_factor must be >= 2, got {self.max_factor}")
        if not 0 <= self.zipf <= 4:
            raise UserError(f"arith: zipf must be in [0, 4], got {self.zipf}")
        if self.zipf and self.max_value > 1000:  # each draw weighs its whole range
            raise UserError(f"arith: zipf needs max_value <= 1000, got {self.max_value}")
        if self.expr_max_terms and not self.min_terms <= self.expr_max_terms <= self.max_terms:
            raise UserError(f"arith: expr_max_terms must be 0 or in [min_terms, max_terms], got "
                            f"{self.expr_max_terms}")
        if self.expr_max_value and not 2 <= self.expr_max_value <= self.max_value:
            raise UserError(f"arith: expr_max_value must be 0 or in [2, max_value], got "
                            f"{self.expr_max_value}")
        top = self.expr_max_value or self.max_value
        if not 0 <= self.expr_above < top:
            raise UserError(f"arith: expr_above must be in [0, {top}) (the expressions' largest "
                            f"number), got {self.expr_above}")
        if self.expr_zipf != -1.0 and not 0 <= self.expr_zipf <= 4:
            raise UserError(f"arith: expr_zipf must be -1 (as zipf) or in [0, 4], got "
                            f"{self.expr_zipf}")
        if not 0 <= self.lexicon <= 100_000 or not 0 <= self.lexicon_share <= 1:
            raise UserError(f"arith: need 0 <= lexicon <= 100000 and 0 <= lexicon_share <= 1, "
                            f"got {self.lexicon}, {self.lexicon_share}")
        if self.lexicon and not (0 <= self.lexicon_zipf <= 4
                                 and 2 <= self.lexicon_max <= self.max_value):
            raise UserError(f"arith: need lexicon_zipf in [0, 4] and lexicon_max in "
                            f"[2, max_value], got {self.lexicon_zipf}, {self.lexicon_max}")
        if not 0 <= self.expr_share <= 1:
            raise UserError(f"arith: expr_share must be in [0, 1], got {self.expr_share}")
        if self.style not in STYLES:
            raise UserError(f"arith: style must be one of {', '.join(STYLES)}, got "
                            f"{self.style!r}")
        return self


ARITH_PRESETS = {
    "easy": ArithConfig(min_terms=2, max_terms=2, max_value=20, ops="+-"),
    "medium": ArithConfig(min_terms=2, max_terms=3, max_value=50, ops="+-"),
    "hard": ArithConfig(min_terms=3, max_terms=4, max_value=100, ops="+-*", max_factor=5),
    # the difficulty spectrum of the embedded study: 1 to 4 steps, numbers up to 40 drawn
    # with P(v) ~ 1/v (`zipf`), products, stories and expressions mixed. The skew gives the
    # arithmetic facts a head every rung learns ("17 + 2") and a tail of rare ones ("23 - 18")
    # that only larger rungs learn from the same data, so per-step accuracy grows with N
    # (docs/study.md, session 8: with uniform numbers up to 20 the 200k and 600k rungs both
    # saturate). Every step restates what it works on (`quote`), so that copying an operand is
    # a look-up of text just written (session 7: without it rungs below ~100k parameters copy
    # or not by seed)
    "ladder": ArithConfig(min_terms=2, max_terms=5, max_value=40, ops="+-*", max_factor=5,
                          style="mixed", zipf=1.0, quote=True),
}
_NAMES = (("Tom", "He"), ("Ann", "She"), ("Sam", "He"), ("Mia", "She"), ("Ben", "He"),
          ("Eva", "She"), ("Max", "He"), ("Zoe", "She"))
_OBJECTS = ("apples", "pens", "books", "coins", "cards", "eggs", "shells", "stamps")
_PHRASES = {
    "+": ("{P} gets {b} more.", "{P} finds {b} more.", "{P} buys {b} more."),
    "-": ("{P} gives away {b}.", "{P} loses {b}.", "{P} sells {b}."),
    "*": ("Now {p} has {b} times as many.",),
}


def _feasible(op: str, cur: int, cfg: ArithConfig) -> bool:
    return ((op == "+" and cur < cfg.max_value) or (op == "-" and cur > 0) or
            (op == "*" and 1 <= cur and 2 * cur <= cfg.max_value))


def _draw(rng: random.Random, lo: int, hi: int, zipf: float) -> int:
    """A number in [lo, hi]: uniform, or with P(v) ~ v^-zipf (lo >= 1)."""
    if not zipf:
        return rng.randint(lo, hi)
    return rng.choices(range(lo, hi + 1), cum_weights=_zipf_cum(lo, hi, zipf))[0]


@functools.lru_cache(maxsize=4096)
def _zipf_cum(lo: int, hi: int, zipf: float) -> tuple[float, ...]:
    """The cumulative weights random.choices builds from weights v^-zipf, built once: the same
    floats, so the same draws (half of a task's generation time went to rebuilding them)."""
    return tuple(itertools.accumulate(v ** -zipf for v in range(lo, hi + 1)))


_CONSONANTS, _VOWELS = "bdfgklmnprstvz", "aeiou"
# words the problems and their answers already use ("more"), which a number-word must not be
_RESERVED = set(re.findall(r"[a-z]+", " ".join(
    [*(p for ps in _PHRASES.values() for p in ps), *_OBJECTS,
     *(n.lower() for ns in _NAMES for n in ns), "has how many does have now what is the answer"])))


@functools.lru_cache(maxsize=8)
def lexicon(k: int, top: int, zipf: float) -> tuple[tuple[str, ...], tuple[int, ...],
                                                  tuple[float, ...]]:
    """The world's k number-words in frequency-rank order, their values (2..top) and the
    cumulative weights of their ranks. One fixed draw: a larger k extends a smaller one's list."""
    rng, words, seen = random.Random(7919), [], set()
    while len(words) < k:
        w = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS)
                    for _ in range(rng.choice((2, 3))))
        u = rng.random()  # the value, as a fraction, so that any `top` reads the same draw
        if w not in seen and w not in _RESERVED:
            seen.add(w)
            words.append((w, 2 + int(u * (top - 1))))
    cum = tuple(itertools.accumulate(r ** -zipf for r in range(1, k + 1)))
    return tuple(w for w, _ in words), tuple(v for _, v in words), cum


def number_word(sentence: str) -> str | None:
    """The number-word a story's step sentence says its operand with ("She gets kavo more" ->
    "kavo"), None where it says digits or is no step sentence."""
    tokens = re.findall(r"[A-Za-z]+", sentence)
    found = [w for w in tokens if w.lower() not in _RESERVED]
    return found[0] if len(found) == 1 < len(tokens) and found[0].islower() else None


def _word(rng: random.Random, cfg: ArithConfig, op: str, cur: int) -> tuple[str, int] | None:
    """A number-word that fits a story's step (op on cur), or None (the step says a number)."""
    if op == "*" or rng.random() >= cfg.lexicon_share:
        return None
    words, values, cum = lexicon(cfg.lexicon, cfg.lexicon_max, cfg.lexicon_zipf)
    for _ in range(10):  # a word too big for the step is drawn again, then given up
        i = rng.choices(range(len(words)), cum_weights=cum)[0]
        if (op == "+" and cur + values[i] <= cfg.max_value) or (op == "-" and values[i] <= cur):
            return words[i], values[i]
    return None


def _chain(rng: random.Random, cfg: ArithConfig, words: bool = False
           ) -> tuple[int, list[tuple[str, int, int]], list[str | None]]:
    """A start value, steps (op, operand, result), all numbers within [0, max_value], and how
    each operand is said: a number-word (`words` and a lexicon) or None (its digits)."""
    z = cfg.zipf
    while True:
        start = cur = _draw(rng, 2, cfg.max_value, z)  # 2+: "1 apples" reads badly
        steps, said = [], []
        for _ in range(rng.randint(cfg.min_terms, cfg.max_terms) - 1):
            ok = [op for op in cfg.ops if _feasible(op, cur, cfg)]
            if not ok:
                break
            op = rng.choice(ok)
            word = _word(rng, cfg, op, cur) if words and cfg.lexicon else None
            if word:
                b = word[1]
            elif op == "+":
                b = _draw(rng, 1, cfg.max_value - cur, z)
            elif op == "-":
                b = _draw(rng, 1, cur, z)
            else:
                b = _draw(rng, 2, min(cfg.max_factor, cfg.max_value // cur), z)
            res = {"+": cur + b, "-": cur - b, "*": cur * b}[op]
            steps.append((op, b, res))
            said.append(word[0] if word else None)
            cur = res
        else:
            return start, steps, said  # a chain that ran out of feasible ops is drawn again


def _expr(start: int, steps) -> str:
    """The chain as an expression, evaluated left to right: "(3 + 4) * 2 - 5"."""
    expr = str(start)
    for i, (op, b, _) in enumerate(steps):
        if op == "*" and i > 0 and any(o != "*" for o, _, _ in steps[:i]):
            expr = f"({expr})"  # the chain is evaluated left to right
        expr = f"{expr} {op} {b}"
    return expr


def _expr_question(start: int, steps) -> str:
    return f"What is {_expr(start, steps)}?"


STYLE_NAMES = {"words": "stories", "expr": "expressions"}  # question_style's values, for people


def question_style(question: str) -> str:
    """"expr" for a bare expression ("What is 3 + 4?"), else "words" (a story)."""
    return "expr" if question.startswith("What is ") else "words"


def story_start(question: str) -> int | None:
    """The start number of a story, where its first sentence gives it in digits (the task's
    stories always do); None for an expression or a first sentence without digits. A story's
    worked chain begins by copying it."""
    if question_style(question) == "expr":
        return None
    digits = re.findall(r"\d+", question[:4000].split(". ")[0])
    return int(digits[0]) if digits else None


def question_operands(question: str) -> list[int | str | None]:
    """The numbers a problem's chain works on, in its order: the start, then each step's
    operand, as an int where the question gives digits and as the number-word where a story
    says it with one ("She finds finoba more." -> "finoba"; None for a step sentence with
    neither). Expressions read left to right; a story has its start in the first sentence and
    one step per sentence up to the question."""
    question = question[:4000]  # problems are a few hundred characters; bound the parse
    if question_style(question) == "expr":
        return [int(x) for x in re.findall(r"\d+", question)]
    start, steps = story_start(question), question.split(". ")[1:]
    out: list[int | str | None] = [] if start is None else [start]
    for sentence in steps[:-1]:  # the last is "How many ... now?"
        digits = re.findall(r"\d+", sentence)
        out.append(int(digits[0]) if digits else number_word(sentence))
    return out


def word_values(spec: str) -> dict[str, int]:
    """Every number-word of an arith task spec's lexicon with its value ({} without one, or
    for a task that is not arith)."""
    if not spec.startswith("arith"):
        return {}
    cfg = parse_arith_spec(spec)
    if not cfg.lexicon:
        return {}
    words, values, _ = lexicon(cfg.lexicon, cfg.lexicon_max, cfg.lexicon_zipf)
    return dict(zip(words, values))


def _words_question(rng: random.Random, start: int, steps, names=None
                    ) -> tuple[str, list[str]]:
    """The story, and its step sentences (one per step, without the full stop); names[k], where
    given, is the number-word that says step k's operand."""
    name, pronoun = rng.choice(_NAMES)
    obj = rng.choice(_OBJECTS)
    names = names or [None] * len(steps)
    said = [rng.choice(_PHRASES[op]).format(P=pronoun, p=pronoun.lower(), b=w or b)[:-1]
            for (op, b, _), w in zip(steps, names)]
    parts = [f"{name} has {start} {obj}.", *(f"{x}." for x in said),
             f"How many {obj} does {name} have now?"]
    return " ".join(parts), said


def _mixed_style(rng: random.Random, expr_share: float) -> str:
    if expr_share == 0.5:  # the draw of earlier versions: the same problems as before
        return rng.choice(("words", "expr"))
    return "expr" if rng.random() < expr_share else "words"


def _expr_config(cfg: ArithConfig) -> ArithConfig:
    """The config expressions are drawn from: cfg itself unless expr_max_value / expr_zipf are
    set (so that specs without them draw exactly the problems of earlier versions)."""
    if not cfg.expr_max_value and cfg.expr_zipf == -1.0:
        return cfg
    return replace(cfg, max_value=cfg.expr_max_value or cfg.max_value,
                   zipf=cfg.zipf if cfg.expr_zipf == -1.0 else cfg.expr_zipf)


def arith_problem(rng: random.Random, cfg: ArithConfig) -> Problem:
    """One problem: its question, the worked chain ending in "#### N", level = its steps."""
    start, steps, names = _chain(rng, cfg)
    style = cfg.style if cfg.style != "mixed" else _mixed_style(rng, cfg.expr_share)
    ecfg = _expr_config(cfg) if style == "expr" else cfg
    if ecfg is not cfg:
        start, steps, names = _chain(rng, ecfg)
    while style == "expr" and (cfg.expr_max_terms and len(steps) + 1 > cfg.expr_max_terms
                               or max([start, *(x for _, b, r in steps for x in (b, r))])
                               <= cfg.expr_above):
        start, steps, names = _chain(rng, ecfg)  # drawn again: levels stay uniform up to the cap
    if style == "words" and cfg.lexicon:  # drawn again with number-words (specs without a
        start, steps, names = _chain(rng, cfg, words=True)  # lexicon: the problems as before)
    if style == "expr":
        question, said = _expr_question(start, steps), None
    else:
        question, said = _words_question(rng, start, steps, names)
    lines, prev = [], start
    if cfg.quote_start and said is not None:  # a story: "Max has 7 apples." first
        lines.append(question.split(". ")[0] + ".")
    for k, (op, b, res) in enumerate(steps):
        if cfg.quote and said:  # the step's sentence, then its equation
            lines.append(f"{said[k]}: {prev} {op} {b} = {res}")
        elif cfg.quote:  # the expression left, then its first operation: "4 + 5 - 2: 4 + 5 = 9"
            lines.append(f"{_expr(prev, steps[k:])}: {prev} {op} {b} = {res}")
        else:
            lines.append(f"{prev} {op} {b} = {res}")
        prev = res
    solution = "\n".join(lines + [f"#### {prev}"])
    return Problem(question, str(prev), solution, level=len(steps))


def arith_problems(n: int, seed: int, cfg: ArithConfig = ArithConfig()) -> list[Problem]:
    """n seeded arithmetic problems (duplicates possible; rlscale.tasks.load_task dedupes)."""
    cfg.validate()
    rng = random.Random(seed)
    return [arith_problem(rng, cfg) for _ in range(n)]


def parse_arith_spec(spec: str) -> ArithConfig:
    """'arith' | 'arith:<preset>' | 'arith:<preset>,key=value,...' | 'arith:key=value,...'."""
    cfg = ARITH_PRESETS["medium"]
    rest = spec.split(":", 1)[1] if ":" in spec else ""
    types = {f.name: f.type for f in fields(ArithConfig)}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        if "=" not in item:
            if item not in ARITH_PRESETS:
                raise UserError(f"task {spec!r}: unknown arith preset {item!r}; choose one of "
                                f"{', '.join(ARITH_PRESETS)} or key=value")
            cfg = ARITH_PRESETS[item]
            continue
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in types:
            raise UserError(f"task {spec!r}: unknown arith setting {key!r}; choose from "
                            f"{', '.join(types)}")
        kind = {"int": int, "float": float, "bool": bool}.get(str(types[key]), types[key])
        if kind is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise UserError(f"task {spec!r}: {key} must be 1/0 (true/false), got {value!r}")
            value = value.lower() in ("1", "true", "yes")
        elif kind in (int, float):
            try:
                value = kind(value)
            except ValueError:
                raise UserError(f"task {spec!r}: {key} must be a number, got {value!r}") from None
        cfg = replace(cfg, **{key: value})
    return cfg.validate()
