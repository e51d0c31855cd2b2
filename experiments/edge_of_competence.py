"""edge_of_competence.py STUDY [--problems M] [--out DIR] (session 37): the report's
`rl_lifts_edge` (rlscale.findings_evals) on the first M held-out problems of a finished study
(default 800) instead of its 64 pass@k problems. Per problem:

    base greedy (the study's baseline, 0-shot)     policy greedy (evals/<rung>/<run>/greedy)
    base pass@32 at the rollout temperature, new   policy pass@32, new (both `rlscale eval`)

The base-wrong problems split into half-known (>= 1 of the base model's 32 samples right) and
unknown (none). Printed per rung and style: the policies' greedy accuracy on each (seed means per
problem, SE over problems), where the fixes lie, problems expanded (unknown to the base model,
solved by the policies' samples) and lost (the reverse), and the policies' greedy accuracy by the
base model's right samples of 32. The new evals land in OUT (default STUDY/edge) and are reused
on a second call; their first 64 problems reproduce the study's pass@k evals.

    PYTHONPATH=. .venv/bin/python experiments/edge_of_competence.py /tmp/s36/run18
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rlscale import findings_evals as E
from rlscale.arith import STYLE_NAMES as STYLE
from rlscale.arith import question_style
from rlscale.evaluate import EvalConfig, evaluate
from rlscale.files import atomic_write_json, read_json, read_jsonl
from rlscale.report import zero_shot_scores



def right_samples(model: Path, study: Path, out: Path, m: int, preset: dict) -> dict[int, int]:
    """Problem index -> right samples of pass@k's draw on the first m problems (resumed)."""
    cfg = EvalConfig(model=str(model), task=str(study / "task"), out=str(out), shots=(0,),
                     samples=preset["passk_samples"], temperature=preset["passk_temperature"],
                     max_new_tokens=preset["max_new_tokens"], n_problems=m, seed=preset["seed"],
                     batch_size=512)
    evaluate(cfg)
    return {r["index"]: sum(x > 0 for x in r["scores"]["custom_flexible"])
            for r in read_jsonl(out / "completions.jsonl")}


def rung_rows(study: Path, out: Path, tag: str, m: int, preset: dict) -> tuple[list, int]:
    """(findings_evals.edge_rows of a rung on the first m problems, its main runs)."""
    base_g = {i: v for i, v in zero_shot_scores(study / "baseline" / tag,
                                                "custom_flexible").items() if i < m}
    base_k = right_samples(study / "pretrain" / tag / "model", study, out / tag / "base", m, preset)
    runs = sorted(p.name for p in (study / "evals" / tag).iterdir() if p.name != "base")
    after_g = [zero_shot_scores(study / "evals" / tag / r / "greedy", "custom_flexible")
               for r in runs]
    after_k = [right_samples(study / "runs" / r / "policy", study, out / tag / r, m, preset)
               for r in runs]
    styles = {r["index"]: question_style(r["question"])
              for r in read_jsonl(out / tag / "base" / "completions.jsonl")}
    rows = E.edge_rows(base_g, base_k, after_g, after_k, styles, preset["passk_samples"])
    return rows, len(runs)


def line(name: str, c: dict) -> str:
    def acc(key):
        v, se = c[f"after_{key}"], c[f"after_{key}_se"]
        return "  n/a" if v is None else f"{v:.3f} (SE {se or 0:.3f})"

    share = "n/a" if c["fixes_half_share"] is None else f"{c['fixes_half_share']:.2f}"
    return (f"{name:<20} wrong {c['wrong']:>4}  half-known {c['half_known']:>4} -> greedy after "
            f"{acc('half')}  unknown {c['unknown']:>4} -> {acc('unknown')}  fixes "
            f"{c['fixes']:6.1f} ({share} half-known)  expanded {c['expanded']:5.1f} lost "
            f"{c['lost']:5.1f}")


def by_rate(rows: list[dict]) -> str:
    """The policies' greedy accuracy on base-wrong problems by the base model's right samples."""
    return "  ".join(f"{b['lo']}-{b['hi']}: {b['after']:.2f} of {b['problems']}"
                     for b in E.edge_bins(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--problems", type=int, default=800)
    ap.add_argument("--out", type=Path, default=None, help="default: STUDY/edge")
    a = ap.parse_args()
    out = a.out or a.study / "edge"
    s = read_json(a.study / "summary.json")
    preset = {**read_json(a.study / "study.json")["preset"], "seed": s["seed"]}
    rungs = []
    for r in sorted(s["rungs"], key=lambda r: r["N"]):
        tag = r["rung"].removeprefix("micro:")
        rows, n_runs = rung_rows(a.study, out, tag, a.problems, preset)
        rungs.append({"rung": tag, "edge_problems": rows})
        print(line(f"{tag} ({n_runs} runs)", E.edge_cell(rows)), flush=True)
    f = E.rl_lifts_edge(rungs)
    d = f["details"]
    print(line("all rungs", d["pooled"]))
    for st, c in d["per_style"].items():
        print(line(f"all, {STYLE.get(st, st)}", c))
    lo, hi = f["interval"] or (math.nan, math.nan)
    print(f"rl_lifts_edge: {f['value']} [{lo:.3f}, {hi:.3f}], reproduced {f['reproduced']}")
    print("greedy after RL on base-wrong problems by the base model's right samples of 32:")
    rows = [p for r in rungs for p in r["edge_problems"]]
    for st in sorted({p["style"] for p in rows}):
        print(f"  {STYLE.get(st, st):<12} " + by_rate([p for p in rows if p["style"] == st]))
    for r in rungs:
        print(f"  {r['rung']:<12} " + by_rate(r["edge_problems"]))
    atomic_write_json(out / "edge.json", {"study": str(a.study), "seed": s["seed"],
                                          "problems": a.problems, "finding": f})


if __name__ == "__main__":
    main()
