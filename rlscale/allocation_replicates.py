"""`rlscale replicates` on allocation directories: does the compute split hold across seeds?

One allocation experiment (`rlscale study --preset allocate-... --seed S --out DIR`) is one draw
of the train split order, the pre-training initialisations and the RL seeds; its answer (the
best measured split of each budget, the RL shares the data cannot tell from it) is a claim about
the ladder only where other draws give it too. This tables, per budget, every seed's best
measured option, how much worse pure pre-training and the smallest RL measured are, and the RL
shares within 2 combined SE of the best (and where the seeds' ranges overlap); per checkpoint,
the RL gain per seed, with the share of it the first steps bring and what the last steps add
(from the runs' metrics.jsonl); and per seed the law: its form, its validation and its score on
the points it did not see. Reads what the experiments wrote: allocation.json,
allocation_settings.json and runs/*/metrics.jsonl.
"""

from __future__ import annotations

import math
from pathlib import Path

from rlscale.errors import UserError
from rlscale.files import read_json

EARLY, MID = 40, 120  # the steps of the early-gain and plateau readings (docs/study.md, run 54)


def is_allocation(d: str) -> bool:
    return (Path(d) / "allocation.json").is_file() and not (Path(d) / "summary.json").is_file()


def load(dirs: list[str]) -> list[dict]:
    """The allocation.json of replicates of one preset, in seed order. One line per bad input."""
    out = []
    for d in dirs:
        path = Path(d) / "allocation.json"
        a = read_json(path) if path.is_file() else None
        if not isinstance(a, dict) or not isinstance(a.get("budgets"), list):
            raise UserError(f"{path}: not an allocation result (no 'budgets'; is {d} a finished "
                            f"`rlscale study --preset allocate-...` directory?)")
        _check(a, path)
        seed = a.get("seed")
        out.append({**a, "_dir": str(d),
                    "_seed": seed if isinstance(seed, int) else _seed(Path(d))})
    for a in out[1:]:
        if a.get("preset") != out[0].get("preset"):
            raise UserError(f"{a['_dir']}/allocation.json: preset {a.get('preset')!r} differs "
                            f"from {out[0]['_dir']}'s {out[0].get('preset')!r}: not replicates")
    seeds = [a["_seed"] for a in out]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds {seeds}: two directories hold the same seed (not replicates)")
    return sorted(out, key=lambda a: a["_seed"])


_BEST = ("curve", "step", "rl_share", "test_loss", "test_loss_se")
_CHECKPOINT = ("curve", "rung", "N", "pretrain_tokens", "steps", "before", "after", "gain",
               "gain_se")


def _check(a: dict, path: Path) -> None:
    """The fields this table reads, each where allocation.json puts it; else one line naming it."""
    def need(obj, keys, where, optional=False):
        if obj is None and optional:
            return
        if not isinstance(obj, dict):
            raise UserError(f"{path}: {where}: expected an object, got {type(obj).__name__}")
        for k in keys:
            if k not in obj:
                raise UserError(f"{path}: {where}: no field {k!r}")

    for i, b in enumerate(a["budgets"]):
        need(b, ("C_total",), f"budgets[{i}]")
        if not isinstance(b["C_total"], (int, float)) or not b["C_total"] > 0:
            raise UserError(f"{path}: budgets[{i}].C_total: {b['C_total']!r} is not a budget")
        need(b.get("best"), _BEST, f"budgets[{i}].best", optional=True)
        for kind in ("pretrain_only", "rl_minimal"):
            need(b.get(kind), ("worse_by", "worse_by_se"), f"budgets[{i}].{kind}", optional=True)
        need(b.get("tied"), ("rl_share",), f"budgets[{i}].tied", optional=True)
        share = (b.get("tied") or {}).get("rl_share", [0, 0])
        if not (isinstance(share, list) and len(share) == 2
                and all(isinstance(x, (int, float)) for x in share)):
            raise UserError(f"{path}: budgets[{i}].tied.rl_share: {share!r} is not a range")
    checkpoints = a.get("checkpoints", [])
    if not isinstance(checkpoints, list):
        raise UserError(f"{path}: checkpoints: expected a list")
    for i, c in enumerate(checkpoints):
        need(c, _CHECKPOINT, f"checkpoints[{i}]")
    _check_validation(a.get("validation"), path)


def _check_validation(v, path: Path) -> None:
    """The validation fields the law table reads (a result may predate any of them)."""
    if v is None:
        return
    if not isinstance(v, dict):
        raise UserError(f"{path}: validation: expected an object, got {type(v).__name__}")
    for k in ("error", "se"):
        if v.get(k) is not None and not isinstance(v[k], (int, float)):
            raise UserError(f"{path}: validation.{k}: {v[k]!r} is not a number")
    for k in ("within_2se", "inside_interval"):
        if v.get(k) is not None and not isinstance(v[k], bool):
            raise UserError(f"{path}: validation.{k}: {v[k]!r} is not true or false")
    vs = v.get("vs_measured_best")
    if vs is not None and not (isinstance(vs, dict) and all(
            isinstance(vs.get(k), (int, float)) or vs.get(k) is None for k in ("difference", "z"))):
        raise UserError(f"{path}: validation.vs_measured_best: expected an object with a numeric "
                        f"'difference' and 'z'")
    draws = v.get("draws", [])
    if not (isinstance(draws, list) and all(isinstance(d, dict) and isinstance(
            d.get("measured"), (int, float)) for d in draws)):
        raise UserError(f"{path}: validation.draws: expected a list of objects with a "
                        f"numeric 'measured'")


def _seed(d: Path) -> int:
    """The seed of a replicate written before allocation.json held it: the allocation preset's
    (allocation_settings.json), else its base study preset's."""
    from rlscale.study_presets import PRESETS as STUDY

    path = d / "allocation_settings.json"
    preset = (read_json(path) if path.is_file() else {}).get("preset") or {}
    if preset.get("seed") is not None:
        return int(preset["seed"])
    base = STUDY.get(preset.get("base", ""))
    return base.seed if base else 0


def _budgets(allocs: list[dict]) -> list[list[float]]:
    """Per budget of the grid, its value in each replicate. The grid is anchored at the largest
    C_total measured (rlscale.allocation_points.budget_grid), whose RL part varies with the
    completions' lengths, so replicates' budgets differ by a few percent; the grid's steps are
    sqrt(10) apart, so a budget is matched by its position, and more than 10% apart refused."""
    grids = [[b["C_total"] for b in a["budgets"]] for a in allocs]
    for a, g in zip(allocs[1:], grids[1:]):
        if len(g) != len(grids[0]) or any(not math.isclose(x, y, rel_tol=0.1)
                                          for x, y in zip(g, grids[0])):
            raise UserError(f"{a['_dir']}/allocation.json: its budgets differ from "
                            f"{allocs[0]['_dir']}'s: not replicates of one grid")
    return [list(c) for c in zip(*grids)]


def _z(o: dict | None) -> float | None:
    if not o or not o.get("worse_by_se"):
        return None
    return o["worse_by"] / o["worse_by_se"]


def budget_rows(allocs: list[dict]) -> list[dict]:
    from rlscale.findings import SE_Z  # numpy: not at CLI start-up

    rows = []
    for i, cs in enumerate(_budgets(allocs)):
        per = []
        for a in allocs:
            b = a["budgets"][i]
            best, tied = b.get("best"), b.get("tied") or {}
            per.append({"best": best and {k: best[k] for k in _BEST},
                        "pretrain_only_z": _z(b.get("pretrain_only")),
                        "rl_minimal_z": _z(b.get("rl_minimal")),
                        "tied_share": tied.get("rl_share")})
        ranges = [p["tied_share"] for p in per if p["tied_share"]]
        overlap = ([max(r[0] for r in ranges), min(r[1] for r in ranges)]
                   if len(ranges) == len(per) else None)
        zs = [p["pretrain_only_z"] for p in per]
        rows.append({"C_total": cs[0], "C_total_per_seed": cs, "seeds": per,
                     "same_best_checkpoint": len({p["best"]["curve"] if p["best"] else None
                                                  for p in per}) == 1,
                     "rl_pays_in": sum(z is not None and z > SE_Z for z in zs),
                     # None: a seed without the range (written before it existed); a range
                     # whose low end passes its high end: the seeds' ranges do not meet
                     "tied_overlap": overlap})
    return rows


def _curve(d: str, curve: str) -> dict[int, dict]:
    """step -> evaluation of one checkpoint's RL run ({} where its metrics are absent)."""
    from rlscale.rundir import METRICS, read_run

    run = Path(d) / "runs" / curve
    if not (run / METRICS).is_file():
        return {}
    return {r["step"]: r for r in read_run(run).evals if "step" in r}


def _gain(a: dict, b: dict) -> tuple[float, float | None]:
    """Accuracy gain from evaluation a to b, and in combined SE."""
    g = a["test_loss"] - b["test_loss"]
    se = math.hypot(a.get("test_loss_se") or 0, b.get("test_loss_se") or 0)
    return g, (g / se if se > 0 else None)


def checkpoint_rows(allocs: list[dict]) -> list[dict]:
    names = list(dict.fromkeys(c["curve"] for a in allocs for c in a.get("checkpoints", [])))
    rows = []
    for name in names:
        per = []
        for a in allocs:
            c = next((c for c in a.get("checkpoints", []) if c["curve"] == name), None)
            ev = _curve(a["_dir"], name)
            row = c and {"before": c["before"], "after": c["after"], "gain": c["gain"],
                         "gain_se": c["gain_se"], "steps": c["steps"]}
            if row and 0 in ev and EARLY in ev and row["steps"] > MID and MID in ev:
                last = ev[max(ev)]
                total = _gain(ev[0], last)[0]
                row["early_share"] = _gain(ev[0], ev[EARLY])[0] / total if total > 0 else None
                row["late"], row["late_se"] = _gain(ev[MID], last)
            per.append(row)
        first = next(c for a in allocs for c in a.get("checkpoints", []) if c["curve"] == name)
        rows.append({"curve": name, "rung": first["rung"], "N": first["N"],
                     "pretrain_tokens": first["pretrain_tokens"], "seeds": per})
    return sorted(rows, key=lambda r: (r["N"], r["pretrain_tokens"]))


def _split(h: dict, key: str) -> dict | None:
    """One class of held-out points (allocation_points.held_out's by_checkpoint), or None."""
    c = (h.get("by_checkpoint") or {}).get(key)
    return {k: c.get(k) for k in ("n_points", "mare", "within_2se", "inside_interval")} \
        if c and c.get("n_points") else None


def law_rows(allocs: list[dict]) -> list[dict]:
    rows = []
    for a in allocs:
        v, h, law = a.get("validation") or {}, a.get("held_out") or {}, a.get("law") or {}
        rows.append({"seed": a["_seed"], "form": law.get("form"), "r2": law.get("r2"),
                     "validation_error": v.get("error"), "validation_se": v.get("se"),
                     "validation_within_2se": v.get("within_2se"),
                     "validation_draws": [d["measured"] for d in v.get("draws", [])] or None,
                     "validation_inside_interval": v.get("inside_interval"),
                     "validation_vs_best": (v.get("vs_measured_best") or {}).get("difference"),
                     "validation_vs_best_z": (v.get("vs_measured_best") or {}).get("z"),
                     "held_out_mare": h.get("mare"), "regret": h.get("regret"),
                     "held_out_seen": _split(h, "seen"), "held_out_unseen": _split(h, "unseen"),
                     "regret_se": h.get("regret_se")})
    return rows


def table(allocs: list[dict]) -> dict:
    return {"kind": "allocation", "preset": allocs[0].get("preset"),
            "seeds": [a["_seed"] for a in allocs], "dirs": [a["_dir"] for a in allocs],
            "budgets": budget_rows(allocs), "checkpoints": checkpoint_rows(allocs),
            "law": law_rows(allocs)}


# ---------------------------------------------------------------- markdown
def _f(x, spec=".3f") -> str:
    return "-" if x is None else f"{x:{spec}}"


def _split_cell(r: dict) -> str:
    seen, unseen = r.get("held_out_seen"), r.get("held_out_unseen")
    if not seen and not unseen:
        return ""
    return (f" ({_f((seen or {}).get('mare'))} / {_f((unseen or {}).get('mare'))}; inside the "
            f"interval {_pct((seen or {}).get('inside_interval'))} / "
            f"{_pct((unseen or {}).get('inside_interval'))})")


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _share_range(r) -> str:
    return "-" if not r else f"{_pct(r[0])}-{_pct(r[1])}"


def _c(b: dict) -> str:
    """A budget's label: its value, or the range of the seeds' values where they differ."""
    cs = b.get("C_total_per_seed") or [b["C_total"]]
    lo, hi = f"{min(cs):.3g}", f"{max(cs):.3g}"
    return lo if lo == hi else f"{lo}-{hi}"


def _overlap(r) -> str:
    return "-" if r is None else "none (disjoint)" if r[0] > r[1] else _share_range(r)


def _ck(curve: str) -> str:
    """'20k-009998336' -> '20k, 10.0M tokens'."""
    rung, _, tokens = curve.rpartition("-")
    return f"{rung}, {int(tokens) / 1e6:.2f}M" if tokens.isdigit() else curve


def _best(p: dict) -> str:
    b = p["best"]
    if not b:
        return "-"
    return (f"{_ck(b['curve'])} step {b['step']}, RL {_pct(b['rl_share'])}: "
            f"{b['test_loss']:.3f} ± {b['test_loss_se']:.3f}")


def _ckpt(p: dict | None) -> str:
    if not p:
        return "-"
    s = f"{p['before']:.3f} -> {p['after']:.3f} ({_f(p['gain_se'], '+.1f')} SE)"
    if "late" in p:
        early = ("no net gain to share" if p["early_share"] is None else
                 f"first {EARLY} steps {_pct(p['early_share'])} of it")
        s += (f"; {early}; steps {MID}-{p['steps']} "
              f"{p['late']:+.3f} ({_f(p['late_se'], '+.1f')} SE)")
    return s


def markdown(t: dict) -> str:
    seeds, n = t["seeds"], len(t["seeds"])
    cols = " | ".join(f"seed {s}" for s in seeds)
    sep = "|---|" + "---|" * n
    L = [f"# Allocation replicates: `{t['preset']}`, {n} seeds ({', '.join(map(str, seeds))})",
         "", "Test loss = 1 - pass@1 at T 0.7 on the held-out problems; RL share = RL FLOPs / "
         "the budget's; SE = combined standard error.", "",
         "## The best measured option at each budget", "",
         f"| budget (FLOPs) | {cols} | same checkpoint in all |", sep + "---|"]
    for b in t["budgets"]:
        L.append(f"| {_c(b)} | " + " | ".join(_best(p) for p in b["seeds"])
                 + f" | {'yes' if b['same_best_checkpoint'] else 'no'} |")
    L += ["", "## How much worse the extremes are, and the RL shares tied with the best", "",
          "Per seed: pure pre-training / the smallest RL measured, worse than the best by (SE); "
          "the RL shares of the points within 2 SE of the best.", "",
          f"| budget (FLOPs) | {cols} | pure pre-training worse by > 2 SE | tied shares in "
          "every seed |", sep + "---|---|"]
    for b in t["budgets"]:
        cells = " | ".join(f"{_f(p['pretrain_only_z'], '+.1f')} / {_f(p['rl_minimal_z'], '+.1f')}"
                           f"; {_share_range(p['tied_share'])}" for p in b["seeds"])
        L.append(f"| {_c(b)} | {cells} | {b['rl_pays_in']} of {n} | "
                 f"{_overlap(b['tied_overlap'])} |")
    L += ["", "## RL gain per checkpoint", "",
          f"Accuracy before -> after RL (gain in SE); on runs longer than {MID} steps, the share "
          f"of the gain the first {EARLY} steps bring and what the steps after {MID} add.", "",
          f"| checkpoint | {cols} |", sep]
    for c in t["checkpoints"]:
        L.append(f"| {_ck(c['curve'])} | " + " | ".join(_ckpt(p) for p in c["seeds"]) + " |")
    L += ["", "## The law per seed", "",
          "Validation: the mean of its draws against the law at the realised allocation (SE "
          "of the mean from the draws' spread; one draw: its evaluation SE), and whether the "
          "mean lies inside the law's own interval there.", "",
          "| seed | form | R² | validation draws, measured | error (SE), within 2 SE | "
          "inside the law's interval | against the best measured at that budget (SE) | "
          "held-out MARE (checkpoints seen / unseen) | regret of its pick ± SE |",
          "|---|---|---|---|---|---|---|---|---|"]
    yes = {True: "yes", False: "no", None: "-"}
    for r in t["law"]:
        L.append(f"| {r['seed']} | {r['form'] or '-'} | {_f(r['r2'])} | "
                 f"{' / '.join(_f(x) for x in r['validation_draws'] or []) or '-'} | "
                 f"{_f(r['validation_error'], '+.3f')} ({_f(r['validation_se'])}), "
                 f"{yes.get(r['validation_within_2se'], '-')} | "
                 f"{yes.get(r.get('validation_inside_interval'), '-')} | "
                 f"{_f(r['validation_vs_best'], '+.3f')} "
                 f"({_f(r['validation_vs_best_z'], '+.1f')}) | "
                 f"{_f(r['held_out_mare'])}{_split_cell(r)} | "
                 f"{_f(r['regret'], '+.3f')} ± {_f(r['regret_se'])} |")
    return "\n".join(L + ["", "Directories: " + ", ".join(t["dirs"]), ""])
