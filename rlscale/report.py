"""The study's report: summary.json, the figures and report.md, all from the jobs' own files.

Everything is read back from what the stages wrote (pretrain.json, the evals' summary.json files,
each run's config.json and metrics.jsonl through rlscale.rundir), so the report can be rebuilt
at any time and a test can check it against the runs. The numbers of the findings table come
from rlscale.findings (pure functions of those numbers); the figures from rlscale.report_plots;
the text from rlscale.report_text. A fit or analysis that fails is reported as such.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np

from rlscale import findings as F
from rlscale import findings_evals as E
from rlscale import findings_law as L
from rlscale.arith import question_style, word_values
from rlscale.chains import answer_styles, chain_stats, mean_stats, mean_styles
from rlscale.eval_metrics import problem_pass_at_k
from rlscale.files import atomic_write_json, atomic_write_text, read_json, read_jsonl
from rlscale.rundir import policy_dir, read_run

PASSK = (1, 2, 4, 8, 16, 32, 64, 128)  # the k reported (those <= the samples drawn)


# ---------------------------------------------------------------- reading the jobs' files
def curve(job) -> dict:
    """One GRPO run as findings' `curve`, plus what the report shows of it."""
    run = read_run(job.out)
    last = run.rows[-1]
    return {"run": job.name, "rung": job.meta["rung"], "N": run.size(), "seed": job.meta["seed"],
            "tau": job.meta["tau"], "reward": job.meta["reward"], "evals": run.evals,
            "unique_prompts": last.get("unique_prompts"), "steps": last["step"],
            "D": last.get("D"), "C_paper": last.get("C_paper"),
            "C_itemized": last.get("C_itemized"), "dir": str(run.path), "config": run.config,
            "model": rl_model(run.path), "matmul_peak_flops": last.get("matmul_peak_flops")}


def rl_model(run_dir) -> str:
    """The directory of a run's RL-trained model: policy/, or (older runs) its last checkpoint."""
    from rlscale.grpo.checkpoint import latest_checkpoint

    policy = policy_dir(run_dir)
    if (policy / "config.json").is_file():
        return str(policy)
    latest = latest_checkpoint(run_dir)
    return f"{latest} (checkpoint weights)" if latest else "(none saved)"


def eval_check(path: Path) -> dict | None:
    """The primary check's numbers of one eval summary (0-shot), or None if it is missing."""
    if not (path / "summary.json").is_file():
        return None
    s = read_json(path / "summary.json")
    return s["results"]["0"]["checks"][s["primary_check"]]


def paired_passk_se(before: Path, after: list[Path]) -> dict:
    """{k: SE of the seed-mean change in pass@k, paired over problems} for pass@1 and pass@k_max
    of the primary check, from the evals' completions; {} where one is missing."""
    files = [d / "completions.jsonl" for d in (before, *after)]
    if not after or not (before / "summary.json").is_file() or not all(f.is_file() for f in files):
        return {}
    s = read_json(before / "summary.json")
    check = s["primary_check"]
    kmax = max(int(k) for k in s["results"]["0"]["checks"][check]["pass_at_k"])
    recs = [read_jsonl(f) for f in files]
    out = {}
    for k in sorted({1, kmax}):
        se = E.paired_se(problem_pass_at_k(recs[0], check, k),
                         [problem_pass_at_k(x, check, k) for x in recs[1:]])
        if se is not None:
            out[str(k)] = se
    return out


def collect(preset, jobs) -> dict:
    """Main-run curves, arm curves, per-rung evals and the per-rung table."""
    main, rungs, evals, scores = [], [], [], []
    words = word_values(preset.task)  # the lexicon, for the chains' recall share
    for r in preset.rungs:
        tag = r.name.removeprefix("micro:")
        mine = [j for j in jobs if j.meta.get("rung") == r.name]
        curves = [curve(j) for j in mine if j.kind == "rl" and j.meta["main"]]
        after = [j for j in mine if j.kind == "evals" and j.meta.get("when") == "after"]
        before = next(Path(j.out) for j in mine if j.kind == "evals" and j.meta["when"] == "before")
        ev = {"rung": r.name, "N": curves[0]["N"], "before": eval_check(before / "passk"),
              "after": [x for j in after if (x := eval_check(Path(j.out) / "passk"))],
              "paired_se": paired_passk_se(before / "passk", [Path(j.out) / "passk" for j in after])}
        pre = read_json(Path(next(j.out for j in mine if j.kind == "pretrain")) / "pretrain.json")
        base_dir = Path(next(j.out for j in mine if j.kind == "baseline"))
        base = read_json(base_dir / "summary.json")
        rungs.append(rung_row(r, pre, base, curves, ev, before, [Path(j.out) for j in after]))
        rungs[-1].update(chain_rows(base_dir, [Path(j.out) / "greedy" for j in after], words))
        rungs[-1].update(style_rows(before / "passk", [Path(j.out) / "passk" for j in after]))
        rungs[-1]["transfer_more"] = transfer_more(preset, before, [Path(j.out) for j in after])
        check = base.get("primary_check") or "custom_flexible"
        scores.append(zero_shot_scores(base_dir, check))
        rungs[-1].update(paired_rows(scores[-1], check, before, [Path(j.out) for j in after]))
        rungs[-1]["edge_problems"] = edge_problems(scores[-1], check, before,
                                                   [Path(j.out) for j in after])
        main += curves
        evals.append(ev)
    arm_jobs = [j for j in jobs if j.kind == "rl" and j.meta["rung"] == preset.arm_rung
                and j.meta["seed"] == preset.seed]
    arms = [curve(j) for j in arm_jobs]
    return {"curves": main, "arms": arms, "evals": evals, "rungs": rungs,
            "baseline_order": E.baseline_order(rungs, scores)}


def _before_after(name: str, stat, mean, before: Path, after: list[Path]) -> dict:
    """{name}_before / {name}_after: `stat` of an eval's completions.jsonl, before RL and as the
    seed mean (`mean`) of the after-RL evals; None where no file is there."""
    def one(d: Path):
        path = d / "completions.jsonl"
        return stat(read_jsonl(path)) if path.is_file() else None

    def seeds(dirs: list[Path]):
        return mean([x for d in dirs if (x := one(d))])

    return {f"{name}_before": seeds([before]), f"{name}_after": seeds(after)}


def chain_rows(base_dir: Path, after: list[Path], words: dict[str, int] | None = None) -> dict:
    """Step-level diagnostics of the greedy 0-shot chains before and after RL (seed mean):
    expressions answered bare, operands copied right, number-words recalled right (`words`: the
    task's lexicon), steps computed right (rlscale.chains)."""
    return _before_after("chains", partial(chain_stats, words=words), mean_stats, base_dir, after)


def style_rows(before: Path, after: list[Path]) -> dict:
    """How the sampled (pass@k) answers to expressions (`answers_*`) and to stories
    (`story_answers_*`) are given, before and after RL (seed mean): worked out or bare, and how
    often each is right (rlscale.chains.answer_styles)."""
    stories = partial(answer_styles, style="words")
    return {**_before_after("answers", answer_styles, mean_styles, before, after),
            **_before_after("story_answers", stories, mean_styles, before, after)}


def paired_greedy_se(before: Path, after: list[Path], check: str | None = None) -> float | None:
    """SE of the seed-mean change in 0-shot greedy accuracy from the eval in `before` to those
    in `after`, paired over the problems they all scored (findings_evals.paired_se); None where
    a completions file is missing. `check`: the before eval's primary check unless given."""
    if not after or not (before / "summary.json").is_file():
        return None
    check = check or read_json(before / "summary.json")["primary_check"]
    scores = [zero_shot_scores(d, check) for d in (before, *after)]
    return E.paired_se(scores[0], scores[1:]) if all(scores) else None


def paired_rows(base_scores: dict[int, float], check: str, before: Path,
                after: list[Path]) -> dict:
    """The paired SEs of a rung's greedy before/after changes: the 0-shot baseline (its
    per-problem `base_scores`, as zero_shot_scores reads them) vs the after-RL greedy evals
    (`final_greedy_se_paired`), and the `transfer` family (`transfer_se_paired`); those of
    transfer_more sit in their own entries. None where a side is missing."""
    greedy = [zero_shot_scores(p / "greedy", check) for p in after]
    return {"final_greedy_se_paired": E.paired_se(base_scores, greedy),
            "transfer_se_paired": paired_greedy_se(before / "transfer",
                                                   [p / "transfer" for p in after])}


def edge_problems(base_scores: dict[int, float], check: str, before: Path,
                  after: list[Path]) -> list[dict]:
    """findings_evals.edge_rows of a rung: the 0-shot baseline's per-problem scores
    (`base_scores`) and right samples of the pass@k eval before RL, each main run's greedy and
    pass@k after; [] where a file is missing."""
    def records(d: Path) -> list[dict]:
        path = d / "passk" / "completions.jsonl"
        return [r for r in read_jsonl(path) if r.get("shots") == 0] if path.is_file() else []

    def right(recs: list[dict]) -> dict[int, int]:
        return {int(r["index"]): sum(1 for x in r["scores"][check] if x > 0) for r in recs}

    base = records(before)
    if not after or not base:
        return []
    styles = {int(r["index"]): question_style(r["question"]) for r in base}
    samples = min(len(r["completions"]) for r in base)
    return E.edge_rows(base_scores, right(base), [zero_shot_scores(p / "greedy", check)
                                                  for p in after],
                       [right(records(p)) for p in after], styles, samples)


def zero_shot_scores(base_dir: Path, check: str) -> dict[int, float]:
    """Problem index -> the 0-shot greedy score of a baseline eval (for paired comparisons)."""
    path = base_dir / "completions.jsonl"
    if not path.is_file():
        return {}
    return {r["index"]: float(r["scores"][check][0]) for r in read_jsonl(path)
            if r.get("shots") == 0}


def _mean_se(values: list[float], ses: list[float]) -> tuple[float, float]:
    """Mean over seeds and the standard error of that mean from each value's own SE."""
    return float(np.mean(values)), math.sqrt(sum(s * s for s in ses)) / len(ses)


def rung_row(r, pre: dict, base: dict, curves: list[dict], ev: dict, before: Path,
             after: list[Path]) -> dict:
    """One row of summary.json's `rungs`: means over the rung's RL seeds, seeds listed."""
    first = [c["evals"][0] for c in curves]
    last = [c["evals"][-1] for c in curves]
    base_acc, base_se = _mean_se([1 - e["test_loss"] for e in first],
                                 [e["test_loss_se"] for e in first])
    fin_acc, fin_se = _mean_se([1 - e["test_loss"] for e in last],
                               [e["test_loss_se"] for e in last])
    check = base.get("primary_check") or "custom_flexible"
    zero = base["results"]["0"]["checks"][check]
    greedy = [x for p in after if (x := eval_check(p / "greedy"))]
    return {
        "rung": r.name, "N": pre["N"], "pretrain_tokens": pre["tokens"],
        "tokens_per_param": pre["tokens"] / pre["N"], "pretrain_flops": pre["flops"],
        "pretrain_lr": r.pretrain_lr, "pretrain_final_loss": pre["final_loss"],
        "pretrain_wall_s": pre["wall_s"], "pretrain_matmul_bf16": pre.get("matmul_bf16", False),
        "seeds": [c["seed"] for c in curves],
        "baseline_acc": base_acc, "baseline_se": base_se, "final_acc": fin_acc, "final_se": fin_se,
        "final_acc_seeds": [1 - e["test_loss"] for e in last],
        "final_acc_spread": float(np.std([1 - e["test_loss"] for e in last], ddof=1))
        if len(last) > 1 else None,
        "gain": float(np.mean([F.run_gain(c) for c in curves])),
        "gain_seeds": [F.run_gain(c) for c in curves],
        # beside the combined SE (the acceptance's): the gain's SE over the same problems
        "gain_se_paired": F.paired_gain_se(curves),
        "rl_steps": curves[0]["steps"], "rl_lr": r.rl_lr, "rl_prompts": curves[0]["D"],
        "rl_flops": curves[0]["C_paper"], "rl_flops_itemized": curves[0]["C_itemized"],
        "kshot_greedy": {k: v["checks"][check]["accuracy"] for k, v in base["results"].items()},
        "kshot_greedy_se": {k: v["checks"][check]["se"] for k, v in base["results"].items()},
        "kshot_problems": {k: v["n_problems"] for k, v in base["results"].items()},
        "baseline_greedy": zero["accuracy"], "baseline_greedy_se": zero["se"],
        "final_greedy": float(np.mean([g["accuracy"] for g in greedy])) if greedy else None,
        "final_greedy_se": _mean_se([0] * len(greedy), [g["se"] for g in greedy])[1]
        if greedy else None,
        "final_greedy_seeds": [g["accuracy"] for g in greedy],
        "pass_at_k_before": _passk([ev["before"]] if ev["before"] else []),
        "pass_at_k_after": _passk(ev["after"]),
        "by_level_before": {lv: v["accuracy"] for lv, v in zero.get("by_level", {}).items()},
        "by_level_after": _levels(greedy),
        "transfer_before": _acc_se(eval_check(before / "transfer")),
        "transfer_after": [_acc_se(x) for p in after if (x := eval_check(p / "transfer"))],
        "run_dir": curves[0]["dir"], "run_dirs": [c["dir"] for c in curves],
        "rl_models": [c["model"] for c in curves],
    }


def transfer_more(preset, before: Path, after: list[Path]) -> dict:
    """Before / after greedy accuracy on each further family RL never saw (transfer_more)."""
    return {fid: {"before": _acc_se(eval_check(before / fid)),
                  "after": [_acc_se(x) for p in after if (x := eval_check(p / fid))],
                  "se_paired": paired_greedy_se(before / fid, [p / fid for p in after])}
            for fid, _ in preset.transfer_more}


def _acc_se(check: dict | None) -> dict | None:
    return {k: check[k] for k in ("accuracy", "se")} if check else None


def _passk(checks: list[dict]) -> dict[str, float]:
    """Seed-mean pass@k at the reported k (empty when there is no eval)."""
    if not checks:
        return {}
    ks = [str(k) for k in PASSK if all(str(k) in c["pass_at_k"] for c in checks)]
    return {k: float(np.mean([c["pass_at_k"][k] for c in checks])) for k in ks}


def _levels(checks: list[dict]) -> dict[str, float]:
    levels = {lv for c in checks for lv in c.get("by_level", {})}
    return {lv: float(np.mean([c["by_level"][lv]["accuracy"] for c in checks
                               if lv in c.get("by_level", {})])) for lv in sorted(levels)}


# ---------------------------------------------------------------- analyses
def arm_rows(arms: list[dict]) -> dict:
    """The data-reuse arm (custom_flexible, every tau) and the reward arm (tau 1, both rewards)."""
    def row(c):
        e0, e = c["evals"][0], c["evals"][-1]
        return {"run": c["run"], "tau": c["tau"], "reward": c["reward"],
                "final_test_loss": e["test_loss"], "final_se": e["test_loss_se"],
                "baseline_test_loss": e0["test_loss"],
                "final_acc_strict": e.get("test_acc_strict"),
                "final_acc_custom_flexible": e.get("test_acc_custom_flexible"),
                "unique_prompts": c["unique_prompts"], "run_dir": c["dir"]}

    tau0 = min((c["tau"] for c in arms), default=1)
    return {"reuse": sorted((row(c) for c in arms if c["reward"] == "custom_flexible"),
                            key=lambda a: a["tau"]),
            "reward": [row(c) for c in arms if c["tau"] == tau0]}


def analyse(data: dict, transfer_task: str, n_boot: int = 100,
            transfer_more: tuple = ()) -> tuple[dict, list[dict], dict]:
    """(fits, findings table, fitted objects for the figures)."""
    import concurrent.futures as cf

    # the extrapolations run in processes of their own (findings_law._extrapolate_each): a
    # thread waits on them while this one fits, so the report's two longest parts overlap
    with cf.ThreadPoolExecutor(1) as pool:
        extrapolation = pool.submit(L.size_extrapolation, data["curves"], n_boot=n_boot)
        fits, table, fitted = _analyse(data, transfer_task, n_boot, transfer_more)
        after = next(i for i, f in enumerate(table) if f["id"] == "law_fit") + 1
        table.insert(after, extrapolation.result())  # the table's order: the law's findings
    return fits, table, fitted


def _analyse(data: dict, transfer_task: str, n_boot: int, transfer_more: tuple):
    """analyse() but the size extrapolation: the fits, the other findings, the fitted objects."""
    fits, fitted = {}, {}
    for name, x in (("loglinear_kn_C", "C_paper"), ("loglinear_kn_D", "D")):
        fits[name], law, pts, boot = L.fit_kn(data["curves"], x, n_boot=n_boot)
        fitted[name] = (law, pts, boot)
    reuse = [c for c in data["arms"] if c["reward"] == "custom_flexible"]
    cf = min(reuse, key=lambda c: c["tau"]) if reuse else None
    strict = next((c for c in data["arms"] if c["reward"] == "strict"), None)
    gain = F.gain_vs_size(data["curves"])
    sharp, greedy = E.rl_sharpens_or_expands(data["evals"]), E.greedy_gain(data["rungs"])
    table = [
        F.size_efficiency(data["curves"], "C_paper", "size_compute_efficiency", "RL compute C"),
        F.size_efficiency(data["curves"], "D", "size_data_efficiency", "number of prompts D"),
        F.k_increases_with_n(data["curves"], fits["loglinear_kn_C"]),
        L.law_fit(data["curves"], {"C_paper": fits["loglinear_kn_C"], "D": fits["loglinear_kn_D"]}),
        F.data_reuse(reuse), gain, F.reward_format(cf, strict),
        sharp, greedy, E.transfer(data["rungs"], transfer_task),
        E.few_shot_stability(data["rungs"])]
    table += [E.transfer(data["rungs"], spec, fid) for fid, spec in transfer_more]
    table += [E.rl_below_edge(data["rungs"], sharp, greedy), E.rl_lifts_edge(data["rungs"])]
    d = gain["details"]
    b, b_iv = d.get("b", gain["value"]), d.get("b_interval", gain["interval"])
    fits["gain_power"] = ({"law": "gain_power", "params": {"a": d["a"], "b": b}, "r2": d["r2"],
                           "b_interval": b_iv, "n_points": d["n_rungs"], "flags": d["flags"]}
                          if "a" in d else {"law": "gain_power",
                                            "error": d.get("no_power_law", "no fit")})
    return fits, table, fitted


def run_settings(curves: list[dict]) -> dict:
    """The GRPO settings the main runs used, read from their config.json: one value when all
    runs agree, else the list of values."""
    keys = ("temperature", "top_p", "batch_size", "group_size", "mini_batch_size", "kl_coef",
            "clip_low", "clip_high", "loss_agg", "adv", "reward", "eval_temperature",
            "eval_samples", "heldout", "max_new_tokens", "fewshot", "reuse", "lr", "steps")
    out = {}
    for k in keys:
        vals = [c["config"].get(k) for c in curves]
        uniq = sorted(dict.fromkeys(vals), key=repr)
        out[k] = uniq[0] if len(uniq) == 1 else uniq
    mb = [c["config"]["batch_size"] // c["config"]["mini_batch_size"] for c in curves
          if c["config"].get("mini_batch_size")]
    out["updates_per_step"] = mb[0] if len(set(mb)) == 1 else sorted(set(mb))
    return out


# ---------------------------------------------------------------- writing
def write_report(preset, jobs, out: Path, n_boot: int = 100) -> dict:
    import dataclasses

    from rlscale.report_plots import figures
    from rlscale.report_text import markdown

    out = Path(out)
    data = collect(preset, jobs)
    fits, table, fitted = analyse(data, preset.transfer_task, n_boot, preset.transfer_more)
    study = read_json(out / "study.json")
    _store(data, out)
    arms = arm_rows(data["arms"])
    summary = {"preset": preset.name, "task": preset.task, "seed": preset.seed,
               "wall_s": study.get("wall_s"), "job_s": study.get("job_s", {}),
               "rungs": data["rungs"], "baseline_order": data["baseline_order"], "arms": arms,
               "fits": fits, "findings": table,
               "k_per_rung_slope": k_by_rung(data["rungs"], table),
               "run_settings": run_settings(data["curves"]),
               "settings": dataclasses.asdict(preset),
               "all_rungs_improved": all((F.gain_in_se(r) or 0.0) > F.SE_Z
                                         for r in data["rungs"]),
               "machine": machine(data["curves"] + data["arms"])}
    summary["figures"] = figures(data, summary, fitted, out)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.md", markdown(summary))
    return summary


def machine(curves: list[dict]) -> dict:
    """How fast the machine ran the study: the fp32 matmul peak recorded by each GRPO run
    (rlscale.flops.matmul_peak_flops, measured once per process: a study's worker processes
    measure at their first run, with the other workers busy), median and range in GFLOP/s. The
    same preset's wall time moves with it (sessions 31-33: 153-190 GFLOP/s on one machine
    kind). None where the runs predate the record."""
    runs = {c["dir"]: c.get("matmul_peak_flops") for c in curves}  # an arm can be a main run
    peaks = sorted(p / 1e9 for p in runs.values() if p)
    if not peaks:
        return {"matmul_peak_gflops": None, "matmul_peak_gflops_range": None, "runs": 0}
    return {"matmul_peak_gflops": float(np.median(peaks)),
            "matmul_peak_gflops_range": [peaks[0], peaks[-1]], "runs": len(peaks)}


def k_by_rung(rungs: list[dict], table: list[dict]) -> dict[str, float | None]:
    """The findings' per-rung k (seed-mean log-log slope on C), keyed by rung name."""
    k = next(f for f in table if f["id"] == "k_increases_with_n")["details"]["k_per_rung"]
    return {r["rung"]: k.get(f"{float(r['N']):.6g}") for r in rungs}


def _store(data: dict, out: Path) -> None:
    """Every GRPO run of the study in OUT/results.sqlite, for `rlscale fit` / `rlscale runs`."""
    from rlscale.store import import_run_dir

    for c in {c["dir"]: c for c in data["curves"] + data["arms"]}.values():
        import_run_dir(out / "results.sqlite", c["dir"])
