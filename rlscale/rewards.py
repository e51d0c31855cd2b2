"""Answer checks (rewards): strict, flexible, custom_flexible, boxed; each f(completion, answer).

Definitions (DESIGN.md, "Rewards"). Numbers are compared after `normalize_number`: `,` and `$`
stripped, one trailing `.` dropped, then canonical decimal form (12 == 12.0 == 12.00, -0 == 0).
- strict: the first `#### <number>` (lm-evaluation-harness gsm8k "strict-match": regex
  `#### (\\-?[0-9\\.\\,]+)`, first match). No marker, no reward.
- flexible: the last number of the completion (lm-eval "flexible-extract": last match of
  `(-?[$0-9.,]{2,})|(-?[0-9]+)`). Both find maximal runs of `[$0-9.,]` with an optional `-`
  just before; lm-eval also counts digit-free runs such as "..", which can never equal a number,
  so we skip them and take the last run that holds a digit.
- custom_flexible: cut the completion after the first `#### <number>` (base models go on with
  new questions); the number after the marker if there is one, else the last number.
- boxed: the last balanced `\\boxed{...}`, equal by normalised string/number, else math-verify,
  bounded in time (signal timeouts on the main thread, a killable helper process elsewhere).

Safety and cost: no eval() of model text; every regex is linear (no nested quantifiers) and each
scan touches a character a bounded number of times, so a megabyte completion takes milliseconds.

Standard library only (math-verify when `boxed` needs it): this file is also the body of the
reward module `rlscale export-verl` writes, which must run on a verl worker without rlscale.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from typing import Callable

try:
    from rlscale.errors import UserError
except ImportError:  # running as the exported verl reward module, outside rlscale
    UserError = ValueError

_STRICT = re.compile(r"#### (-?[0-9.,]+)")
_RUN = re.compile(r"[$0-9.,]+")  # applied to the reversed text: the last run comes first
_DIGIT = re.compile(r"[0-9]")
_NUMBER = re.compile(r"(-?)([0-9]*)(?:\.([0-9]+))?")
_BOX = re.compile(r"\\(?:boxed|fbox)")
_BRACE = re.compile(r"[{}]")
MAX_VERIFY_CHARS = 1000  # longer boxed contents are compared as strings: sympy can be slow
VERIFY_TIMEOUT_S = 2


def normalize_number(s: str | None) -> str | None:
    """Canonical decimal string of a number written with optional `,` `$` and trailing `.`;
    None if it is not a plain decimal number. '1,234' -> '1234', '12.00' -> '12', '-0' -> '0'."""
    if s is None:
        return None
    t = s.strip().replace(",", "").replace("$", "")
    if t.endswith("."):
        t = t[:-1]
    m = _NUMBER.fullmatch(t)
    if not m or not (m.group(2) or m.group(3)):
        return None
    whole = m.group(2).lstrip("0") or "0"
    frac = (m.group(3) or "").rstrip("0")
    out = whole + ("." + frac if frac else "")
    return "-" + out if m.group(1) and out != "0" else out


def _same_number(pred: str | None, answer: str) -> bool:
    if pred is None:
        return False
    p, a = normalize_number(pred), normalize_number(answer)
    if p is not None and a is not None:
        return p == a
    # a non-numeric gold answer: plain string equality after the same stripping
    strip = lambda s: s.strip().replace(",", "").replace("$", "").removesuffix(".").lower()  # noqa
    return strip(pred) == strip(answer)


def _strict_match(completion: str) -> re.Match | None:
    return _STRICT.search(completion)


def _last_number(completion: str) -> str | None:
    rev = completion[::-1]
    for m in _RUN.finditer(rev):
        run = m.group()
        if _DIGIT.search(run):
            minus = m.end() < len(rev) and rev[m.end()] == "-"
            return ("-" if minus else "") + run[::-1]
    return None


def _match_brace(text: str, open_at: int, end: int) -> int | None:
    """Index of the `}` closing the `{` at open_at, searching before `end`; None if unclosed."""
    depth = 0
    for m in _BRACE.finditer(text, open_at, end):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return m.start()
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last balanced \\boxed{...} (or \\fbox{...}, or `\\boxed 5`); None if none.

    Linear: when the last box is unclosed, its `{` never closes, so an earlier box must close
    before it; each earlier candidate is scanned only up to the previous one."""
    if not text:
        return None
    starts = [m.start() for m in _BOX.finditer(text)]
    end = len(text)
    for i in reversed(starts):
        j = i + (6 if text.startswith("\\boxed", i) else 5)
        k = j
        while k < len(text) and k - j < 16 and text[k] == " ":
            k += 1
        if k < len(text) and text[k] == "{":
            close = _match_brace(text, k, end)
            if close is not None:
                return text[k + 1:close].strip()
            end = i
        elif k > j:  # "\boxed 5": the next token
            tok = re.match(r"[^\s$]{1,100}", text[k:k + 100])
            if tok:
                return tok.group()
    return None


# ---------------------------------------------------------------- the four checks
def before_stop(text: str, stops: tuple[str, ...]) -> str:
    """The text before the first of `stops`: what a rollout that stops there keeps, for scoring
    one that ran on (GRPO with stop_at_question off; the exported verl module)."""
    cut = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(cut)] if cut else text


def strict(completion: str, answer: str) -> float:
    return float(_same_number(extract("strict", completion), answer))


def flexible(completion: str, answer: str) -> float:
    return float(_same_number(extract("flexible", completion), answer))


def custom_flexible(completion: str, answer: str) -> float:
    return float(_same_number(extract("custom_flexible", completion), answer))


def boxed(completion: str, answer: str) -> float:
    pred = extract("boxed", completion)
    if pred is None:
        return 0.0
    gold = last_boxed(answer) or answer  # accept a gold answer given with or without \boxed
    if _latex_key(pred) == _latex_key(gold) or _same_number(pred, gold):
        return 1.0
    if len(pred) > MAX_VERIFY_CHARS or len(gold) > MAX_VERIFY_CHARS:
        return 0.0
    return float(bool(math_verify_equal(gold, pred)))


def extract(method: str, completion: str) -> str | None:
    """The text a check reads as the answer (before number normalisation); None if none."""
    if not completion:
        return None
    if method == "strict":
        m = _strict_match(completion)
        return m.group(1) if m else None
    if method == "flexible":
        return _last_number(completion)
    if method == "custom_flexible":
        m = _strict_match(completion)
        return m.group(1) if m else _last_number(completion)
    if method == "boxed":
        return last_boxed(completion)
    raise UserError(f"unknown answer check {method!r}; choose from {', '.join(REWARDS)}")


REWARDS: dict[str, Callable[[str, str], float]] = {
    "strict": strict,
    "flexible": flexible,
    "custom_flexible": custom_flexible,
    "boxed": boxed,
}


# ---------------------------------------------------------------- math-verify, bounded in time
def _latex_key(s: str) -> str:
    """Cheap canonical form for string equality of LaTeX answers."""
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\left", "")
    s = s.replace("\\right", "").replace("\\!", "").replace("$", "")
    return "".join(s.split()).removesuffix(".")


MATH_VERIFY_MISSING = ("boxed answer check: these answers differ as text, and comparing them as "
                       "math needs the math-verify package (pip install math-verify)")


def _verify_now(gold: str, pred: str, timeout: int | None) -> bool:
    from math_verify import parse, verify

    g = parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout)
    p = parse(f"\\boxed{{{pred}}}", parsing_timeout=timeout)
    return bool(g and p and verify(g, p, timeout_seconds=timeout))


def _verify_worker(conn) -> None:  # runs in the helper process
    import logging

    # the helper is the timeout: silence math-verify's "timeout is disabled" warnings
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    while True:
        try:
            gold, pred = conn.recv()
        except EOFError:
            return
        try:
            conn.send(_verify_now(gold, pred, None))
        except Exception:
            conn.send(False)


class _Helper:
    """One spawned process that runs math-verify for non-main threads, where SIGALRM timeouts
    cannot be set; a comparison that overruns kills it (a fresh one starts on the next call).

    The child runs this very file (runpy) rather than importing it by module name: as verl's
    reward module it was loaded from a path under a name no other process can import."""

    def __init__(self):
        self.lock = threading.Lock()
        self.proc = None
        self.conn = None

    def verify(self, gold: str, pred: str, timeout: float) -> bool | None:
        import multiprocessing as mp
        import runpy

        with self.lock:
            if self.proc is None or not self.proc.is_alive():
                ctx = mp.get_context("spawn")
                self.conn, child = ctx.Pipe()
                self.proc = ctx.Process(target=runpy.run_path, args=(__file__,), kwargs={
                    "init_globals": {"_HELPER_CONN": child}, "run_name": _HELPER_MAIN},
                    daemon=True)
                self.proc.start()
                timeout += 20  # first call: the process imports sympy and math-verify
            self.conn.send((gold, pred))
            if self.conn.poll(timeout):
                return bool(self.conn.recv())
            self.proc.kill()
            self.proc.join()
            self.proc = None
            return None


_HELPER = _Helper()
_HELPER_MAIN = "__answer_check_helper__"


def math_verify_equal(gold: str, pred: str, timeout: int = VERIFY_TIMEOUT_S) -> bool:
    """math-verify equivalence of two LaTeX answers, never running longer than about 3 timeouts;
    False on timeout or error. ImportError (one line) when math-verify is not installed."""
    if importlib.util.find_spec("math_verify") is None:
        raise ImportError(MATH_VERIFY_MISSING)
    try:
        if threading.current_thread() is threading.main_thread():
            return _verify_now(gold, pred, timeout)
        return bool(_HELPER.verify(gold, pred, 3 * timeout))
    except Exception:  # math-verify's own TimeoutException, parser errors
        return False


if __name__ == _HELPER_MAIN:  # the helper process (see _Helper)
    _verify_worker(globals()["_HELPER_CONN"])
