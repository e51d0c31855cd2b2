"""`rlscale replicates`: how a study's answers hold across seeds.

One study (`rlscale study --seed S --out DIR`) is one draw of the train split order, the
pre-training initialisation and batch order and the RL seeds. A finding that flips between
draws is not a finding of the ladder. This command reads the summary.json of several replicates
of one preset (the same task and held-out problems, different seeds) and tables, per finding,
its value and verdict in every replicate and how many reproduce it; per rung, the baseline and
after-RL greedy accuracy and the RL gain in combined standard errors, with their spread over
replicates; and per replicate the issue-level checks (baselines ordered by size, every rung's
gain above 2 combined SE, greedy rising); and, over every rung of every replicate, the RL gain
against the base model's worked advantage (the edge of competence, rlscale.chains). It reads
only what the studies wrote. Allocation experiments have their own table
(rlscale.allocation_replicates).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from rlscale.errors import UserError
from rlscale.files import atomic_write_json, atomic_write_text, read_json

def load(dirs: list[str]) -> list[dict]:
    """The summaries of replicates of one preset, in seed order. One line per bad input."""
    out = []
    for d in dirs:
        path = Path(d) / "summary.json"
        if not path.is_file():
            raise UserError(f"{path}: no such file (is {d} a finished `rlscale study` directory?)")
        s = read_json(path)
        if not isinstance(s, dict) or not isinstance(s.get("rungs"), list) or "findings" not in s:
            raise UserError(f"{path}: not a study summary (no 'rungs' / 'findings')")
        out.append({**s, "_dir": str(d)})
    first = out[0]
    for s in out[1:]:
        for key in ("preset", "task"):
            if s.get(key) != first.get(key):
                raise UserError(f"{s['_dir']}/summary.json: {key} {s.get(key)!r} differs from "
                                f"{first['_dir']}'s {first.get(key)!r}: not replicates of one study")
    seeds = [s.get("seed") for s in out]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds {seeds}: two directories hold the same seed (not replicates)")
    return sorted(out, key=lambda s: s.get("seed") or 0)


def checks(s: dict) -> dict:
    """The issue-level checks of one replicate, from its summary."""
    from rlscale.findings import SE_Z, gain_in_se  # numpy: not at CLI start-up

    rungs = s["rungs"]
    order = s.get("baseline_order") or {}
    gains = [gain_in_se(r) for r in rungs]
    rises = [r.get("final_greedy") is not None and r.get("baseline_greedy") is not None
             and r["final_greedy"] > r["baseline_greedy"] for r in rungs]
    ratios = [r["kshot_greedy"]["5"] / r["kshot_greedy"]["0"] for r in rungs
              if r.get("kshot_greedy", {}).get("0")]
    greedy = next((f for f in s.get("findings", []) if f["id"] == "greedy_gain"), {})
    per_rung = (greedy.get("details") or {}).get("per_rung") or {}
    falls = [x for x in per_rung.values() if isinstance(x, dict) and "down" in x]
    return {"seed": s.get("seed"),
            "baselines_ordered": bool(order.get("increasing") and
                                      order.get("each_step_above_combined_se")),
            "baselines_ordered_paired": bool(order.get("increasing") and
                                             order.get("each_step_above_paired_se")),
            # rungs whose greedy accuracy falls by > 2 SE (paired); None before session 29
            "greedy_falls": sum(x["down"] for x in falls) if falls else None,
            "largest_baseline": order.get("largest"),
            "gain_se": gains,
            # the same gains over their SE paired over problems (None: runs before session 30)
            "gain_se_paired": [r["gain"] / r["gain_se_paired"] if r.get("gain_se_paired")
                               else None for r in rungs],
            "rungs_gain_above_2se": sum(g is not None and g > SE_Z for g in gains),
            "greedy_rises": sum(rises),
            "min_5shot_ratio": min(ratios) if ratios else None,
            "n_rungs": len(rungs)}


def _spread(xs: list) -> tuple[float | None, float | None]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def table(summaries: list[dict]) -> dict:
    """Per finding, per rung and per replicate: the cross-seed view (plain data)."""
    seeds = [s.get("seed") for s in summaries]
    ids = list(dict.fromkeys(f["id"] for s in summaries for f in s["findings"]))
    findings = []
    for fid in ids:
        per = [next((f for f in s["findings"] if f["id"] == fid), None) for s in summaries]
        verdicts = [f.get("reproduced") if f else None for f in per]
        findings.append({"id": fid, "values": [f.get("value") if f else None for f in per],
                         "reproduced": verdicts,
                         "reproduced_in": sum(v is True for v in verdicts),
                         "failed_in": sum(v is False for v in verdicts),
                         "untestable_in": sum(v is None for v, f in zip(verdicts, per) if f),
                         # a summary written before the finding existed: not a verdict
                         "absent_in": sum(f is None for f in per),
                         "absent_at": [i for i, f in enumerate(per) if f is None]})
    names = list(dict.fromkeys(r["rung"] for s in summaries for r in s["rungs"]))
    rungs = []
    for name in names:
        per = [next((r for r in s["rungs"] if r["rung"] == name), {}) for s in summaries]
        row = {"rung": name, "N": next((r["N"] for r in per if r.get("N")), None)}
        for key in ("baseline_greedy", "final_greedy", "baseline_acc", "final_acc", "gain"):
            vals = [r.get(key) for r in per]
            mean, sd = _spread(vals)
            row[key] = {"values": vals, "mean": mean, "sd": sd}
        rungs.append(row)
    return {"seeds": seeds, "dirs": [s["_dir"] for s in summaries], "findings": findings,
            "rungs": rungs, "checks": [checks(s) for s in summaries], "edge": edge(summaries)}


def edge(summaries: list[dict]) -> dict:
    """The edge of competence across every rung of every replicate: the worked advantage of
    the base model (expressions sampled at the rollout temperature: worked minus bare accuracy,
    rlscale.chains) against its RL gain (T 0.7 test accuracy), and their Spearman rho."""
    from rlscale.findings import spearman  # scipy: not at CLI start-up

    points = [{"seed": s.get("seed"), "rung": r["rung"], "N": r.get("N"),
               "worked_advantage": (r.get("answers_before") or {}).get("worked_advantage"),
               "gain": r.get("gain")} for s in summaries for r in s["rungs"]]
    points = [p for p in points if p["worked_advantage"] is not None and p["gain"] is not None]
    rho = spearman([p["worked_advantage"] for p in points], [p["gain"] for p in points])
    return {"points": points, "rho": None if rho != rho else rho}


def _f(x, spec=".3f") -> str:
    return "-" if x is None else (f"{x:{spec}}" if isinstance(x, (int, float)) else str(x))


def _mark(v) -> str:
    return {True: "yes", False: "no", None: "n/a"}[v]


def markdown(t: dict) -> str:
    seeds, n = t["seeds"], len(t["seeds"])
    cols = " | ".join(f"seed {s}" for s in seeds)
    lines = [f"# Replicates: {n} seeds ({', '.join(map(str, seeds))})", "",
             "## Findings (value, reproduced) per seed", "",
             f"| finding | {cols} | reproduced in |", "|---|" + "---|" * n + "---|"]
    for f in t["findings"]:
        cells = " | ".join("absent" if i in f["absent_at"] else
                           f"{_f(v, '.3g')} ({_mark(r)})"
                           for i, (v, r) in enumerate(zip(f["values"], f["reproduced"])))
        untestable = "".join(f" ({f[k]} {w})" for k, w in (("untestable_in", "not testable"),
                                                          ("absent_in", "absent")) if f[k])
        lines.append(f"| {f['id']} | {cells} | {f['reproduced_in']} of {n}{untestable} |")
    lines += ["", "## Rungs: greedy 0-shot before -> after RL, and the sampled gain",
              "", f"| rung | {cols} | before: mean (sd) | after: mean (sd) |",
              "|---|" + "---|" * n + "---|---|"]
    for r in t["rungs"]:
        b, a = r["baseline_greedy"], r["final_greedy"]
        cells = " | ".join(f"{_f(x)} -> {_f(y)}" for x, y in zip(b["values"], a["values"]))
        lines.append(f"| {r['rung']} | {cells} | {_f(b['mean'])} ({_f(b['sd'])}) | "
                     f"{_f(a['mean'])} ({_f(a['sd'])}) |")
    lines += ["", "## Checks per seed", "",
              "| seed | baselines ordered (steps > combined SE; > paired SE) | largest baseline | "
              "rungs gaining > 2 SE (T 0.7) | gain / combined SE per rung (/ paired SE) | "
              "greedy rises (falls by > 2 "
              "SE) | smallest 5-shot / 0-shot |",
              "|---|---|---|---|---|---|---|"]
    for c in t["checks"]:
        gains = ", ".join(_f(g, "+.1f") + ("" if p is None else f" ({p:+.1f})")
                          for g, p in zip(c["gain_se"], c.get("gain_se_paired") or
                                          [None] * len(c["gain_se"])))
        falls = "" if c.get("greedy_falls") is None else f" ({c['greedy_falls']})"
        lines.append(f"| {c['seed']} | {_mark(c['baselines_ordered'])}; "
                     f"{_mark(c.get('baselines_ordered_paired'))} | "
                     f"{_f(c['largest_baseline'])} | {c['rungs_gain_above_2se']} of "
                     f"{c['n_rungs']} | {gains} | {c['greedy_rises']} of {c['n_rungs']}{falls} | "
                     f"{_f(c['min_5shot_ratio'], '.2f')} |")
    e = t.get("edge") or {}
    if e.get("points"):
        lines += ["", "## RL gain against the base model's worked advantage (every rung, every "
                  "seed)", "", "Worked advantage: accuracy of expressions worked out minus that of "
                  "bare answers, sampled before RL at the rollout temperature. "
                  f"Spearman rho over the {len(e['points'])} points: {_f(e['rho'], '+.2f')}.", "",
                  "| rung | seed | worked advantage | RL gain (T 0.7) |", "|---|---|---|---|"]
        lines += [f"| {p['rung']} | {p['seed']} | {_f(p['worked_advantage'], '+.3f')} | "
                  f"{_f(p['gain'], '+.3f')} |" for p in sorted(e["points"], key=lambda p: (
                      p["N"] or 0, p["seed"] or 0))]
    lines += ["", "Directories: " + ", ".join(t["dirs"]), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI
def configure(p) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR",
                   help="finished study directories of one preset, one per seed "
                        "(`rlscale study --seed S --out DIR`); allocation experiments "
                        "(`--preset allocate-...`) are tabled by budget and checkpoint")
    p.add_argument("--out", default=None, metavar="FILE.md",
                   help="also write the table here, and its numbers to FILE.json")


def run(args) -> int:
    if len(args.dirs) < 2:
        raise UserError(f"DIR: {len(args.dirs)} given; replicates need at least 2 study "
                        f"directories")
    from rlscale import allocation_replicates as alloc

    kinds = {alloc.is_allocation(d) for d in args.dirs}
    if len(kinds) > 1:
        raise UserError("DIR: allocation and study directories mixed; give one kind")
    if kinds == {True}:  # `rlscale study --preset allocate-...` directories
        t = alloc.table(alloc.load(args.dirs))
        text = alloc.markdown(t)
    else:
        t = table(load(args.dirs))
        text = markdown(t)
    if args.out:
        out = Path(args.out)
        atomic_write_json(out.with_suffix(".json"), t)
        atomic_write_text(out, text)
    print(text)
    return 0
