"""edge_of_competence.py STUDY [--problems M] [--out DIR] (session 37): does RL lift what the base
model half-knows? Per held-out problem of a finished study (the first M of the baseline's 0-shot
problems):

    base greedy (the study's baseline, 0-shot)     policy greedy (evals/<rung>/<run>/greedy)
    base pass@32 at the rollout temperature, new   policy pass@32, new (both `rlscale eval`)

The problems the base model gets wrong greedily split into H (half-known: at least one of its 32
samples right) and U (none right). The readings (docs/study.md, session 37, written before any
cell ran): the policy's greedy accuracy on H against U, the share of greedy fixes lying in H, the
same for stories and expressions, and problems expanded (U solved by the policy's samples) against
problems lost (solved by the base's samples, never by the policy's).

    PYTHONPATH=. .venv/bin/python experiments/edge_of_competence.py /tmp/run18 --problems 800
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rlscale.arith import question_style
from rlscale.evaluate import EvalConfig, evaluate, primary_check
from rlscale.files import atomic_write_json, read_json, read_jsonl


def passk(model: Path, study: Path, out: Path, m: int, preset: dict) -> dict[int, int]:
    """problem index -> correct samples of 32 (resumed from out if there)."""
    cfg = EvalConfig(model=str(model), task=str(study / "task"), out=str(out), shots=(0,),
                     samples=preset["passk_samples"], temperature=preset["passk_temperature"],
                     max_new_tokens=preset["max_new_tokens"], n_problems=m, seed=preset["seed"],
                     batch_size=512)
    s = evaluate(cfg)
    check = primary_check(s["meta"]["checks"])
    return {r["index"]: int(sum(r["scores"][check])) for r in read_jsonl(out / "completions.jsonl")}


def greedy(path: Path, m: int) -> dict[int, tuple[bool, str]]:
    """problem index -> (right, style) from a 0-shot greedy completions.jsonl."""
    rows = [r for r in read_jsonl(path) if r["shots"] == 0 and r["index"] < m]
    return {r["index"]: (r["scores"]["custom_flexible"][0] > 0, question_style(r["question"]))
            for r in rows}


def _acc(x: list[bool]) -> tuple[float, float, int]:
    n = len(x)
    p = sum(x) / n if n else math.nan
    return p, (math.sqrt(p * (1 - p) / n) if n else math.nan), n


def cells(base_g, base_k, pol_g, pol_k, style: str | None = None) -> dict:
    """Counts and accuracies of one (base, policy) pair, optionally one style only."""
    idx = [i for i in base_g if i in base_k and i in pol_g and i in pol_k
           and (style is None or base_g[i][1] == style)]
    wrong = [i for i in idx if not base_g[i][0]]
    h = [i for i in wrong if base_k[i] > 0]
    u = [i for i in wrong if base_k[i] == 0]
    fixes = [i for i in wrong if pol_g[i][0]]
    return {"n": len(idx), "wrong": len(wrong), "H": len(h), "U": len(u),
            "H_right": sum(pol_g[i][0] for i in h), "U_right": sum(pol_g[i][0] for i in u),
            "fixes": len(fixes), "fixes_in_H": sum(base_k[i] > 0 for i in fixes),
            "broken": sum(base_g[i][0] and not pol_g[i][0] for i in idx),
            "expanded": sum(base_k[i] == 0 and pol_k[i] > 0 for i in idx),
            "lost": sum(base_k[i] > 0 and pol_k[i] == 0 for i in idx)}


BINS = ((0, 0), (1, 1), (2, 3), (4, 7), (8, 15), (16, 32))


def by_rate(base_g, base_k, pol_g, style: str | None = None) -> dict:
    """Base-wrong problems by the base model's right samples (of 32): [right after, n] a bin."""
    res = {}
    for lo, hi in BINS:
        idx = [i for i in base_g if i in base_k and i in pol_g and not base_g[i][0]
               and lo <= base_k[i] <= hi and (style is None or base_g[i][1] == style)]
        res[f"{lo}-{hi}"] = [sum(pol_g[i][0] for i in idx), len(idx)]
    return res


def add(a: dict, b: dict) -> dict:
    return {**a, **{k: add(a.get(k, {}), v) if isinstance(v, dict) else
            [x + y for x, y in zip(a.get(k, [0] * len(v)), v)] if isinstance(v, list) else
            a.get(k, 0) + v for k, v in b.items()}}


def line(name: str, c: dict) -> str:
    ph, sh, _ = _acc([True] * c["H_right"] + [False] * (c["H"] - c["H_right"]))
    pu, su, _ = _acc([True] * c["U_right"] + [False] * (c["U"] - c["U_right"]))
    share = c["fixes_in_H"] / c["fixes"] if c["fixes"] else math.nan
    return (f"{name:<22} wrong {c['wrong']:>4}  H {c['H']:>4} U {c['U']:>4}  "
            f"greedy after on H {ph:.3f}±{sh:.3f}  on U {pu:.3f}±{su:.3f}  "
            f"fixes {c['fixes']:>4} ({share:.2f} in H) broken {c['broken']:>3}  "
            f"expanded {c['expanded']:>3} lost {c['lost']:>3}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--problems", type=int, default=800)
    ap.add_argument("--out", type=Path, default=None, help="default: STUDY/edge")
    a = ap.parse_args()
    study, m = a.study, a.problems
    out = a.out or study / "edge"
    s = read_json(study / "summary.json")
    preset = {**read_json(study / "study.json")["preset"], "seed": s["seed"]}
    pooled: dict = {}
    by_style: dict = {"words": {}, "expr": {}}
    rates: dict = {}
    report = {"study": str(study), "seed": s["seed"], "problems": m, "rungs": {}}
    for rung in sorted(s["rungs"], key=lambda r: r["N"]):
        tag = rung["rung"].removeprefix("micro:")
        base_g = greedy(study / "baseline" / tag / "completions.jsonl", m)
        base_k = passk(study / "pretrain" / tag / "model", study, out / tag / "base", m, preset)
        runs = sorted(p.name for p in (study / "evals" / tag).iterdir() if p.name != "base")
        rung_c: dict = {}
        for run in runs:
            pol_g = greedy(study / "evals" / tag / run / "greedy" / "completions.jsonl", m)
            pol_k = passk(study / "runs" / run / "policy", study, out / tag / run, m, preset)
            c = cells(base_g, base_k, pol_g, pol_k)
            rung_c = add(rung_c, c)
            for st in by_style:
                by_style[st] = add(by_style[st], cells(base_g, base_k, pol_g, pol_k, st))
                rates = add(rates, {st: by_rate(base_g, base_k, pol_g, st)})
            report["rungs"].setdefault(tag, {})[run] = c
        pooled = add(pooled, rung_c)
        print(line(f"{tag} ({len(runs)} runs)", rung_c), flush=True)
    print(line("pooled", pooled))
    for st, c in by_style.items():
        print(line(f"pooled, {'stories' if st == 'words' else 'expressions'}", c))
    print("base-wrong problems by the base model's right samples of 32: after-RL greedy right / n")
    for st, r in rates.items():
        print(f"  {'stories' if st == 'words' else 'expressions':<12}" + "  ".join(
            f"{b}: {x}/{n} ({x / n if n else math.nan:.2f})" for b, (x, n) in r.items()))
    report.update(pooled=pooled, by_style=by_style, by_rate=rates)
    atomic_write_json(out / "edge.json", report)


if __name__ == "__main__":
    main()
