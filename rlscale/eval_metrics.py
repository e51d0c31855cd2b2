"""The metrics of an evaluation's records: pure functions, no model (the report reads them too).

pass@k (unbiased), the answer checks' scores of completions, and `summarize`: per shot count and
check, accuracy (= pass@1) with its standard error over problems, pass@k for every k <= samples,
test loss = 1 - pass@1, per difficulty level, and the clipped share. `rlscale.evaluate` writes
the records (one JSONL line per shot count and problem) and its summary.json is `summarize` of
them.
"""

from __future__ import annotations

import math


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of n samples with c correct: 1 - C(n-c, k) / C(n, k), computed stably as
    1 - prod_{i=n-c+1..n} (1 - k / i) (never 1 - (1 - c/n)^k, which is biased)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def score(completions: list[str], answer: str, checks) -> dict[str, list[float]]:
    from rlscale.rewards import REWARDS

    return {c: [REWARDS[c](t, answer) for t in completions] for c in checks}


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample SD / sqrt n; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def primary_check(checks) -> str:
    """The check test loss is reported for: custom_flexible (the seed study's), else boxed."""
    for c in ("custom_flexible", "boxed"):
        if c in checks:
            return c
    return list(checks)[0]


def summarize(records: list[dict]) -> dict:
    """Per shot count and check: accuracy (= pass@1) with its standard error over problems,
    pass@k for every k <= samples, test loss = 1 - pass@1; and the clipped share."""
    by_shots: dict[int, list[dict]] = {}
    for r in records:
        by_shots.setdefault(int(r["shots"]), []).append(r)
    results, all_checks = {}, []
    for shots in sorted(by_shots):
        rows = by_shots[shots]
        n = min(len(r["completions"]) for r in rows)
        checks = [c for c in rows[0]["scores"] if all(c in r["scores"] for r in rows)]
        all_checks = all_checks or checks
        clipped = [bool(x) for r in rows for x in r["clipped"]]
        out = {"n_problems": len(rows), "n_samples": n,
               "clipped_share": sum(clipped) / max(1, len(clipped)), "checks": {}}
        for check in checks:
            out["checks"][check] = _check_stats(rows, check, n)
        results[str(shots)] = out
    return {"primary_check": primary_check(all_checks) if all_checks else None,
            "results": results}


def problem_pass_at_k(records: list[dict], check: str, k: int, shots: int = 0) -> dict[int, float]:
    """pass@k of each problem (by its index) of an eval's completions.jsonl records at `shots`:
    the per-problem values whose mean the summary's pass_at_k is (a paired comparison of two
    evals of the same problems needs them; rlscale.findings_evals.paired_se)."""
    rows = [r for r in records if int(r["shots"]) == shots]
    n = min((len(r["completions"]) for r in rows), default=0)
    if not 1 <= k <= n:
        return {}
    return {int(r["index"]): pass_at_k(n, sum(1 for x in r["scores"][check][:n] if x > 0), k)
            for r in rows}


def _check_stats(rows: list[dict], check: str, n: int) -> dict:
    """Accuracy (pass@1) and pass@k, each with its standard error over problems, overall and
    per difficulty level (records carry the problem's `level` when the task has levels)."""
    correct = [sum(1 for s in r["scores"][check][:n] if s > 0) for r in rows]
    acc, se = mean_se([c / n for c in correct])
    passk, passk_se = {}, {}
    for k in range(1, n + 1):
        passk[str(k)], passk_se[str(k)] = mean_se([pass_at_k(n, c, k) for c in correct])
    by_level: dict[str, list[float]] = {}
    for r, c in zip(rows, correct):
        if r.get("level") is not None:
            by_level.setdefault(str(r["level"]), []).append(c / n)
    levels = {lv: dict(zip(("accuracy", "se"), mean_se(v)), n_problems=len(v))
              for lv, v in sorted(by_level.items(), key=lambda t: level_key(t[0]))}
    return {"accuracy": acc, "se": se, "test_loss": 1.0 - acc, "pass_at_k": passk,
            "pass_at_k_se": passk_se, "by_level": levels}


def level_key(level: str):
    """Sort key of a difficulty level: numeric levels in numeric order, then any others."""
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


def format_table(summary: dict) -> str:
    """Accuracy / test loss per shot count and check, then pass@k for every k <= samples."""
    lines = [f"{'shots':>5}  {'check':<16}{'acc':>7}{'±se':>7}{'loss':>7}{'clipped':>9}"
             f"{'problems':>9}{'samples':>8}"]
    passk = []
    for shots, res in summary["results"].items():
        for check, m in res["checks"].items():
            lines.append(f"{shots:>5}  {check:<16}{m['accuracy']:7.3f}{m['se']:7.3f}"
                         f"{m['test_loss']:7.3f}{res['clipped_share']:9.3f}"
                         f"{res['n_problems']:9d}{res['n_samples']:8d}")
            if res["n_samples"] > 1:
                ks = " ".join(f"@{k}={v:.3f}" for k, v in m["pass_at_k"].items())
                passk.append(f"{shots:>5}  {check:<16}{ks}")
    if passk:
        lines += ["", f"{'shots':>5}  {'check':<16}pass@k"] + passk
    return "\n".join(lines)
