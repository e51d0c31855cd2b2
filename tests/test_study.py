"""The embedded study: the plan of the presets, and the smoke preset end to end (every output
file exists and agrees with the runs' own files; a rerun redoes nothing)."""

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from rlscale.chains import answer_styles, chain_stats, mean_stats, mean_styles
from rlscale.errors import UserError
from rlscale.grpo.config import resolve
from rlscale.pretrain import PretrainConfig
from rlscale.study import PRESETS, plan, study


def _n(rung: str) -> int:
    from rlscale.models import LADDER, rung_name

    r = LADDER[rung_name(rung)]
    return r.layers * (4 * r.hidden**2 + 3 * r.hidden * r.intermediate)


@pytest.mark.parametrize("name", ["cpu", "cpu-edge", "cpu-tilt", "cpu-words", "cpu-long",
                                  "cpu-words-2m", "cpu-words-7m", "cpu-words-10m",
                                  "cpu-words-7m-wsd", "cpu-words-tilt", "cpu-words-10m-e20",
                                  "cpu-words-10m-bf16", "gpu"])
def test_presets_span_the_ladder_and_hold_both_arms(name, tmp_path):
    preset = PRESETS[name]
    sizes = [_n(r.name) for r in preset.rungs]
    assert len(sizes) >= 4 and max(sizes) / min(sizes) >= 30  # issue 10: at least 30x
    # one budget rule per preset: tokens = the largest rung's x (N_largest / N)^token_power
    top = max(preset.rungs, key=lambda r: _n(r.name))
    for r in preset.rungs:
        rule = top.tokens * (_n(top.name) / _n(r.name)) ** preset.token_power
        assert r.tokens == (round(rule, -5) if preset.token_power else top.tokens), r.name
    jobs = {j.name: j for j in plan(preset, tmp_path)}
    arm = [j for j in jobs.values() if j.kind == "rl" and j.meta["rung"] == preset.arm_rung
           and j.meta["seed"] == preset.seed]
    taus = sorted(j.meta["tau"] for j in arm if j.meta["reward"] == "custom_flexible")
    assert taus == sorted(preset.taus) and taus[0] == 1 and taus[-1] >= 4
    # the data-reuse arm compares equal total prompts: same steps x batch, fewer unique prompts
    totals = {j.params["steps"] * j.params["batch_size"] for j in arm}
    assert len(totals) == 1
    assert {j.meta["reward"] for j in arm} == {"custom_flexible", "strict"}
    for j in jobs.values():
        assert set(j.deps) <= set(jobs)
        if j.kind == "pretrain":  # every pre-training config is a valid PretrainConfig
            assert PretrainConfig(**j.params).validate().matmul_precision == \
                preset.pretrain_matmul
        if j.kind == "rl":
            assert j.params["eval_temperature"] == 0.7 and j.params["temperature"] == 1.0
            # every run config is a full resolved TrainConfig
            assert j.params == resolve(None, j.params).to_dict()
    for r in preset.rungs:  # RL seeds per main rung, each evaluated after RL
        main = [j for j in jobs.values() if j.kind == "rl" and j.meta["rung"] == r.name
                and j.meta["main"]]
        assert len({j.meta["seed"] for j in main}) == preset.rl_seeds >= 2
        for j in main:
            after = [e for e in jobs.values() if e.kind == "evals" and j.name in e.deps]
            assert len(after) == 1 and {e["sub"] for e in after[0].params["evals"]} >= {
                "greedy", "passk"}


def test_the_default_preset_is_cpu_words_10m_in_the_cli_and_the_makefile():
    """One default (study_presets.DEFAULT_PRESET: cpu-words-10m, by session 44's rule; session
    43's cpu-words-10m-e20 has its models and sparser curves): `rlscale study` without --preset
    and `make study` without PRESET run it."""
    import argparse
    import re
    from pathlib import Path

    from rlscale.study import configure
    from rlscale.study_presets import DEFAULT_PRESET

    p = argparse.ArgumentParser()
    configure(p)
    assert DEFAULT_PRESET == "cpu-words-10m" and p.parse_args([]).preset == DEFAULT_PRESET
    make = (Path(__file__).parents[1] / "Makefile").read_text()
    assert re.search(r"^PRESET \?= (\S+)$", make, re.M).group(1) == DEFAULT_PRESET


def test_cpu_lr_falls_with_size_and_rl_lr_follows_it():
    """The cpu preset's per-rung lr (session 12's rule at 3M tokens): never larger for a larger
    rung, the smallest rung's above the largest's, RL lr = pre-training lr / 47 to one digit."""
    rungs = sorted(PRESETS["cpu"].rungs, key=lambda r: _n(r.name))
    lrs = [r.pretrain_lr for r in rungs]
    assert all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[0] > lrs[-1]
    for r in rungs:
        assert r.rl_lr == pytest.approx(r.pretrain_lr / 47, rel=0.07)


def test_cpu_long_is_the_cpu_ladder_on_three_times_the_tokens():
    """cpu-long keeps the cpu preset's rungs, corpus, RL and evals; the pre-training tokens
    change by one rule for every rung (9M, 3x), and the lr falls with N (1e-2 up to 60k, 5e-3
    above; RL lr = pre-training lr / 47, rounded as the cpu preset's 2e-4)."""
    cpu, long = PRESETS["cpu"], PRESETS["cpu-long"]
    assert [r.name for r in long.rungs] == [r.name for r in cpu.rungs]
    for a, b in zip(cpu.rungs, long.rungs):
        lr = 1e-2 if _n(a.name) < 100_000 else 5e-3
        assert b == dataclasses.replace(a, tokens=3 * a.tokens, pretrain_lr=lr,
                                        rl_lr=pytest.approx(lr / 47, rel=0.07))
    same = {f.name for f in dataclasses.fields(cpu)} - {"name", "rungs"}
    assert {k: getattr(long, k) for k in same} == {k: getattr(cpu, k) for k in same}


def test_cpu_edge_is_the_candidate_that_ran():
    """cpu-edge is the cpu preset on 5M tokens, 120 RL steps and the two-difficulty task (its
    test-side runs in docs/study.md, sessions 13-14), under its own name."""
    cpu, edge = PRESETS["cpu"], PRESETS["cpu-edge"]
    assert edge.task == ("arith:ladder,max_value=99,zipf=1.5,expr_max_value=20,expr_zipf=1,"
                         "expr_max_terms=4")
    assert edge.rungs == tuple(dataclasses.replace(r, tokens=5_000_000, rl_steps=120)
                              for r in cpu.rungs)
    same = {f.name for f in dataclasses.fields(cpu)} - {"name", "rungs", "task", "transfer_task"}
    assert {k: getattr(edge, k) for k in same} == {k: getattr(cpu, k) for k in same}


def test_cpu_tilt_is_cpu_edge_on_the_tilted_budget():
    """cpu-tilt (session 14) is cpu-edge with one change: the budget rule tokens = 5M x
    (N_600k / N)^0.1 (the rule itself is checked for every preset above)."""
    tilt, edge = PRESETS["cpu-tilt"], PRESETS["cpu-edge"]
    assert tilt.token_power == 0.1 and edge.token_power == 0.0
    assert [r.tokens for r in tilt.rungs] == [7_100_000, 6_300_000, 5_600_000, 5_000_000]
    assert tilt.rungs == tuple(dataclasses.replace(r, tokens=t.tokens)
                               for r, t in zip(edge.rungs, tilt.rungs))
    same = {f.name for f in dataclasses.fields(tilt)} - {"name", "rungs", "token_power"}
    assert {k: getattr(tilt, k) for k in same} == {k: getattr(edge, k) for k in same}


def test_cpu_words_is_cpu_edge_with_number_words():
    """cpu-words (session 16) is cpu-edge with a lexicon of 1000 number-words in the stories of
    the task and of the transfer family, and its own lr per rung (RL lr = lr / 47)."""
    words, edge = PRESETS["cpu-words"], PRESETS["cpu-edge"]
    assert words.task == edge.task + ",lexicon=1000"
    assert words.transfer_task == edge.transfer_task + ",lexicon=1000"
    assert [r.pretrain_lr for r in words.rungs] == [2e-2, 2e-2, 4e-2, 5e-3]
    for a, b in zip(edge.rungs, words.rungs):
        assert b == dataclasses.replace(a, pretrain_lr=b.pretrain_lr, rl_lr=b.rl_lr)
        assert b.rl_lr == pytest.approx(b.pretrain_lr / 47, rel=0.07)
    same = {f.name for f in dataclasses.fields(words)} - {"name", "task", "transfer_task",
                                                           "transfer_more", "rungs",
                                                           "kshot_problems"}
    # greedy evals on the whole held-out set (session 29), which stays the same 800 problems
    assert words.kshot_problems == words.heldout == 800 and edge.kshot_problems == 400
    assert max(words.heldout, words.passk_problems) == max(edge.heldout, edge.kshot_problems)
    # and a second transfer family (session 27): expressions past the task's numbers
    assert [fid for fid, _ in words.transfer_more] == ["transfer_expr_numbers"]
    assert "expr_above=20" in words.transfer_more[0][1] and "expr_max_value=20" in words.task
    assert {k: getattr(words, k) for k in same} == {k: getattr(edge, k) for k in same}


def test_cpu_words_2m_is_cpu_words_with_a_fifth_rung():
    """cpu-words-2m (session 18): cpu-words' four rungs unchanged plus micro:2m on the same
    tokens, its lr by the cpu-words rule (pilot 42: 6e-3), RL lr = lr / 47 to one digit."""
    big, words = PRESETS["cpu-words-2m"], PRESETS["cpu-words"]
    assert big.rungs[:4] == words.rungs and len(big.rungs) == 5
    top = big.rungs[-1]
    assert top.name == "micro:2m" and top.tokens == words.rungs[-1].tokens
    assert top.pretrain_lr == 6e-3
    assert top.rl_lr == float(f"{top.pretrain_lr / 47:.0e}")  # one digit
    assert dataclasses.replace(big, name=words.name, rungs=words.rungs) == words


def test_cpu_words_7m_is_cpu_words_on_more_tokens():
    """cpu-words-7m (session 19): cpu-words with every rung on 7.1M tokens, the 20k rung's lr
    by the rule at that budget (pilot 46: 1e-2; RL lr = lr / 47 to one digit), nothing else."""
    more, words = PRESETS["cpu-words-7m"], PRESETS["cpu-words"]
    assert all(r.tokens == 7_100_000 for r in more.rungs)
    bottom = more.rungs[0]
    assert bottom.name == "micro:20k" and bottom.pretrain_lr == 1e-2
    assert bottom.rl_lr == float(f"{bottom.pretrain_lr / 47:.0e}")
    assert more.rungs[1:] == tuple(dataclasses.replace(r, tokens=7_100_000)
                                   for r in words.rungs[1:])
    assert dataclasses.replace(more, name=words.name, rungs=words.rungs) == words


def test_cpu_words_7m_wsd_is_cpu_words_10m_on_fewer_tokens():
    """cpu-words-7m-wsd (session 42): cpu-words-10m on 7.1M tokens a rung with the in-run test
    loss every 20 steps, nothing else (the lrs, schedule, corpus and RL of the 10M preset)."""
    cut, ten = PRESETS["cpu-words-7m-wsd"], PRESETS["cpu-words-10m"]
    assert all(r.tokens == 7_100_000 for r in cut.rungs) and cut.eval_every == 20
    assert cut.rungs == tuple(dataclasses.replace(r, tokens=7_100_000) for r in ten.rungs)
    assert dataclasses.replace(cut, name=ten.name, rungs=ten.rungs, eval_every=10) == ten


def test_cpu_words_tilt_is_cpu_words_7m_wsd_on_the_tilted_rule():
    """cpu-words-tilt (session 42): cpu-words-7m-wsd with tokens = 7.1M x (N_600k / N)^0.1
    (the rule itself: test_presets_span_the_ladder_and_hold_both_arms); the bottom rung on the
    10M of cpu-words-10m's, nothing else changed."""
    tilt, cut = PRESETS["cpu-words-tilt"], PRESETS["cpu-words-7m-wsd"]
    assert [r.tokens for r in tilt.rungs] == [10_000_000, 9_000_000, 7_900_000, 7_100_000]
    assert tilt.rungs[0] == PRESETS["cpu-words-10m"].rungs[0]
    assert tilt.rungs == tuple(dataclasses.replace(r, tokens=t.tokens)
                               for r, t in zip(cut.rungs, tilt.rungs))
    assert dataclasses.replace(tilt, name=cut.name, rungs=cut.rungs, token_power=0.0) == cut


def test_cpu_words_10m_e20_is_cpu_words_10m_with_sparser_curves():
    """cpu-words-10m-e20 (session 43): cpu-words-10m with the in-run test loss every 20 steps
    and nothing else, so its models and evaluations are cpu-words-10m's (the trajectories:
    tests/test_grpo_train.py::test_eval_every_only_subsamples_the_curve)."""
    e20, ten = PRESETS["cpu-words-10m-e20"], PRESETS["cpu-words-10m"]
    assert e20.eval_every == 20 and ten.eval_every == 10
    assert dataclasses.replace(e20, name=ten.name, eval_every=ten.eval_every) == ten


def test_cpu_words_10m_bf16_is_cpu_words_10m_with_bf16_products_in_pretraining(tmp_path):
    """cpu-words-10m-bf16 (session 50): cpu-words-10m with pre-training's products in bf16 and
    nothing else; its pre-training jobs carry the setting, its RL runs do not."""
    bf, ten = PRESETS["cpu-words-10m-bf16"], PRESETS["cpu-words-10m"]
    assert (bf.pretrain_matmul, ten.pretrain_matmul) == ("bf16", "highest")
    assert dataclasses.replace(bf, name=ten.name, pretrain_matmul="highest") == ten
    jobs = plan(bf, tmp_path)
    assert {j.params["matmul_precision"] for j in jobs if j.kind == "pretrain"} == {"bf16"}
    assert not any("matmul_precision" in j.params or j.params.get("autocast")
                   for j in jobs if j.kind != "pretrain")


def test_cpu_words_10m_is_cpu_words_on_10m_tokens():
    """cpu-words-10m (session 20): cpu-words with every rung on 10M tokens, every rung's lr by
    the rule at that budget (session 21, pilot 55: 60k and 200k 1e-2; session 22, pilot 57: 600k
    2.5e-3; session 23, pilot 60: 20k 1e-2; RL lr = lr / 47 to one digit), nothing else
    (pre-training fp32: session 34's rule kept bf16 matmul inputs out)."""
    more, words = PRESETS["cpu-words-10m"], PRESETS["cpu-words"]
    assert all(r.tokens == 10_000_000 for r in more.rungs)
    picked = {"micro:20k": 1e-2, "micro:60k": 1e-2, "micro:200k": 1e-2, "micro:600k": 2.5e-3}
    for r, w in zip(more.rungs, words.rungs):
        moved = r.name in picked
        assert r.pretrain_lr == picked.get(r.name, w.pretrain_lr)
        assert r.rl_lr == (float(f"{r.pretrain_lr / 47:.0e}") if moved else w.rl_lr)
        assert dataclasses.replace(r, tokens=w.tokens, pretrain_lr=w.pretrain_lr,
                                   rl_lr=w.rl_lr) == w
    assert more.pretrain_matmul == words.pretrain_matmul == "highest"
    # pre-training warmup-stable-decay (session 39's copy screen), every other setting cpu-words'
    assert (more.pretrain_schedule, words.pretrain_schedule) == ("wsd", "cosine")
    # ... and since session 47 its k-shot curve's interior (1..4 shots) on 400 of the 800
    assert (more.kshot_mid_problems, words.kshot_mid_problems) == (400, 0)
    assert dataclasses.replace(more, name=words.name, rungs=words.rungs, kshot_mid_problems=0,
                               pretrain_schedule="cosine") == words
    base = [j for j in plan(more, Path("/tmp/x")) if j.kind == "baseline"]
    assert {j.params["shot_problems"] for j in base} == {((1, 400), (2, 400), (3, 400), (4, 400))}
    assert {j.total for j in base} == {2 * 800 + 4 * 400}
    # costed as their prompts' length makes them (session 47: 44 s against the rung's
    # before-RL evals' 12.5 s at 600k), so the scheduler orders them among the evals by it
    evals = {j.name: j.cost for j in plan(more, Path("/tmp/x")) if j.kind == "evals"}
    assert all(j.cost > 2 * evals[j.name.replace("baseline", "evals")] for j in base)
    jobs = [j for j in plan(more, Path("/tmp/x")) if j.kind == "pretrain"]
    assert len(jobs) == 4 and {j.params["schedule"] for j in jobs} == {"wsd"}
    assert all(PretrainConfig(**j.params).validate().budget_steps() == [j.total] for j in jobs)


def test_a_wsd_pretrain_job_counts_its_decay_branch_as_progress(tmp_path):
    """The scheduler's bar reads a wsd run's decay steps from its branch's log (session 39)."""
    from rlscale.scheduler import job_progress

    job = next(j for j in plan(PRESETS["cpu-words-10m"], tmp_path) if j.kind == "pretrain")
    out = Path(job.out)
    (out / "branches" / "010000000").mkdir(parents=True)
    (out / "loss.jsonl").write_text('{"step": 1950}\n{"step": 1960}\n')
    assert job_progress(job) == 1960  # the trunk, before the fork
    (out / "branches" / "010000000" / "loss.jsonl").write_text('{"step": 2200}\n')
    assert job_progress(job) == 2200 < job.total


def _smoke():
    """The smoke preset, with a transfer task when it names none, so every eval is covered."""
    preset = PRESETS["smoke"]
    if not preset.transfer_task:
        preset = dataclasses.replace(preset, transfer_task="arith:min_terms=2,max_terms=2,"
                                                           "max_value=20,style=words")
    return preset


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "smoke"
    summary = study(_smoke(), out, progress=False)
    return out, summary


def _metrics(run_dir) -> list[dict]:
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_smoke_outputs_exist_and_are_linked(smoke):
    out, summary = smoke
    report = (out / "report.md").read_text()
    for name in ("loss_vs_compute", "k_vs_n", "accuracy_vs_total_compute", "data_reuse",
                 "reward_functions", "pass_at_k", "accuracy_by_level", "kshot",
                 "rl_by_temperature", "edge_of_competence"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert f"]({name}.png)" in report
    for link in re.findall(r"\]\(([^)]+)\)", report):
        assert (out / link).is_file()
    assert (out / "results.sqlite").is_file()
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for tag in (r.name.removeprefix("micro:") for r in _smoke().rungs):
        for sub in ("passk", "transfer", "transfer_expr_numbers"):
            assert (out / "evals" / tag / "base" / sub / "summary.json").is_file()
        for run in (tag, f"{tag}-s1"):
            for sub in ("greedy", "passk", "transfer", "transfer_expr_numbers"):
                assert (out / "evals" / tag / run / sub / "summary.json").is_file()
    ids = [f["id"] for f in summary["findings"]]
    assert {"size_compute_efficiency", "size_data_efficiency", "k_increases_with_n", "law_fit",
            "data_reuse", "gain_vs_size", "reward_format", "rl_sharpens_or_expands",
            "rl_below_edge", "rl_lifts_edge"} <= set(ids)
    for key in ("loglinear_kn_C", "loglinear_kn_D", "gain_power"):
        fit = summary["fits"][key]
        assert ("r2" in fit) != ("error" in fit)  # a fit, or the reason there is none
        if "r2" in fit and key != "gain_power":
            assert {"K_max", "N0"} <= set(fit)


def test_smoke_summary_agrees_with_the_runs(smoke):
    out, summary = smoke
    preset = _smoke()
    assert [r["rung"] for r in summary["rungs"]] == [r.name for r in preset.rungs]
    assert all(r["gain_se_paired"] is not None for r in summary["rungs"])  # runs keep test_right
    # the machine's speed: the median of what every GRPO run measured at its start
    peaks = sorted(_metrics(d)[-1]["matmul_peak_flops"] / 1e9 for d in (out / "runs").iterdir())
    m = summary["machine"]
    assert m["runs"] == len(peaks) > 0 and m["matmul_peak_gflops_range"] == [peaks[0], peaks[-1]]
    assert m["matmul_peak_gflops"] == pytest.approx(np.median(peaks)) and peaks[0] > 0
    assert "GFLOP/s" in (out / "report.md").read_text()
    from rlscale.pretrain_loop import bf16_matmuls

    bf16 = bf16_matmuls(preset.pretrain_matmul)  # what the preset's precision gives here
    for r in summary["rungs"]:
        pre = json.loads((out / "pretrain" / r["rung"].removeprefix("micro:") / "pretrain.json")
                         .read_text())
        assert r["pretrain_matmul_bf16"] is pre["matmul_bf16"] is bf16
    assert ("took bf16 inputs" in (out / "report.md").read_text()) is bf16
    # the baseline ordering is recomputed from the baselines' own completions (paired)
    order = summary["baseline_order"]
    scores = []
    for r in summary["rungs"]:
        rows = [json.loads(x) for x in (out / "baseline" / r["rung"].removeprefix("micro:")
                                        / "completions.jsonl").read_text().splitlines()]
        scores.append({x["index"]: x["scores"]["custom_flexible"][0] for x in rows
                       if x["shots"] == 0})
    (step,) = order["steps"]
    common = scores[0].keys() & scores[1].keys()
    assert step["problems"] == len(common) == preset.kshot_problems
    assert step["step"] == pytest.approx(np.mean([scores[1][i] - scores[0][i] for i in common]))
    for r in summary["rungs"]:
        tag = r["rung"].removeprefix("micro:")
        pre = json.loads((out / "pretrain" / tag / "pretrain.json").read_text())
        rows = _metrics(out / "runs" / tag)
        evals = [x for x in rows if x.get("test_loss") is not None]
        seeds = [_evals(out / "runs" / run) for run in (tag, f"{tag}-s1")]
        cfg = json.loads((out / "runs" / tag / "config.json").read_text())
        assert r["N"] == pre["N"] == cfg["N"]
        assert r["pretrain_tokens"] == pre["tokens"]
        assert r["tokens_per_param"] == pytest.approx(pre["tokens"] / pre["N"])
        assert r["pretrain_flops"] == pytest.approx(6 * r["N"] * r["pretrain_tokens"])
        assert evals[0]["step"] == 0 and evals[-1]["step"] == rows[-1]["step"]
        # seed means, and the SE of the mean from each run's own SE
        assert r["baseline_acc"] == pytest.approx(sum(1 - e[0]["test_loss"] for e in seeds) / 2)
        assert r["final_acc"] == pytest.approx(sum(1 - e[-1]["test_loss"] for e in seeds) / 2)
        assert r["final_acc_seeds"] == pytest.approx([1 - e[-1]["test_loss"] for e in seeds])
        assert r["final_se"] == pytest.approx(math.hypot(*(e[-1]["test_loss_se"] for e in seeds)) / 2)
        assert r["rl_flops"] == pytest.approx(rows[-1]["C_paper"]) and r["rl_flops"] > 0
        assert r["rl_steps"] == preset.rungs[0].rl_steps
        assert set(r["kshot_greedy"]) == set(r["kshot_greedy_se"]) == {str(k) for k in range(6)}
        # the curve's interior on the first kshot_mid_problems, its ends on all
        mid = preset.kshot_mid_problems
        assert 0 < mid < preset.kshot_problems and r["kshot_problems"] == {
            str(k): mid if 0 < k < 5 else preset.kshot_problems for k in range(6)}
        # greedy 0-shot and pass@k before and after RL, from the evals' own files
        base = json.loads((out / "baseline" / tag / "summary.json").read_text())
        assert r["baseline_greedy"] == base["results"]["0"]["checks"]["custom_flexible"]["accuracy"]
        greedy = [_acc(out / "evals" / tag / run / "greedy") for run in (tag, f"{tag}-s1")]
        assert r["final_greedy"] == pytest.approx(sum(g["accuracy"] for g in greedy) / 2)
        # the step diagnostics: the baseline's, and the seed mean of the runs' greedy chains
        assert r["chains_before"] == mean_stats([chain_stats(_jsonl(out / "baseline" / tag))])
        after = [chain_stats(_jsonl(out / "evals" / tag / run / "greedy"))
                 for run in (tag, f"{tag}-s1")]
        assert r["chains_after"] == mean_stats(after)
        # how the sampled (pass@k) answers to expressions are given, from the evals' files
        assert r["answers_before"] == answer_styles(_jsonl(out / "evals" / tag / "base" / "passk"))
        assert r["answers_after"] == mean_styles([answer_styles(_jsonl(out / "evals" / tag / run
                                                                        / "passk"))
                                                   for run in (tag, f"{tag}-s1")])
        assert r["story_answers_before"] == answer_styles(
            _jsonl(out / "evals" / tag / "base" / "passk"), style="words")
        before = _acc(out / "evals" / tag / "base" / "passk")["pass_at_k"]
        assert r["pass_at_k_before"] == {k: before[k] for k in ("1", "2", "4", "8", "16", "32")
                                         if k in before}
        kmax = 2 ** (preset.passk_samples.bit_length() - 1)  # the largest reported k
        assert max(map(int, r["pass_at_k_after"])) == kmax
        # pass@1's change and its SE paired over the problems, by hand from the completions
        def rate(d):
            return {x["index"]: np.mean([v > 0 for v in x["scores"]["custom_flexible"]])
                    for x in _jsonl(d)}
        b = rate(out / "evals" / tag / "base" / "passk")
        a = [rate(out / "evals" / tag / run / "passk") for run in (tag, f"{tag}-s1")]
        diff = [np.mean([x[i] for x in a]) - b[i] for i in b]
        sharp = next(x for x in next(f for f in summary["findings"] if f["id"] ==
                                     "rl_sharpens_or_expands")["details"]["rungs"]
                     if x["rung"] == r["rung"])
        assert sharp["se_paired"] and sharp["d_pass1"] == pytest.approx(np.mean(diff))
        assert sharp["se1"] == pytest.approx(np.std(diff, ddof=1) / math.sqrt(len(diff)))
        assert r["rl_models"][0] == str(out / "runs" / tag / "policy")
        # the edge of competence's rows, by hand: base greedy, base right samples, after greedy
        # (seed mean) and solved by the policies' samples (seed mean), per pass@k problem
        greedy_after = [{x["index"]: x["scores"]["custom_flexible"][0]
                         for x in _jsonl(out / "evals" / tag / run / "greedy")}
                        for run in (tag, f"{tag}-s1")]
        edge = {p["index"]: p for p in r["edge_problems"]}
        assert sorted(edge) == sorted(b) and len(edge) == (preset.passk_problems
                                                             or preset.kshot_problems)
        for x in _jsonl(out / "evals" / tag / "base" / "passk"):
            p = edge[x["index"]]
            assert p["base_right"] == sum(v > 0 for v in x["scores"]["custom_flexible"])
            assert p["base_samples"] == len(x["completions"]) == preset.passk_samples
            assert p["base_greedy"] == scores[[q["rung"] for q in summary["rungs"]].index(
                r["rung"])][x["index"]]
            assert p["after_greedy"] == pytest.approx(np.mean([g[x["index"]]
                                                               for g in greedy_after]))
            assert p["after_solved"] == pytest.approx(np.mean([y[x["index"]] > 0 for y in a]))
    edge = next(f for f in summary["findings"] if f["id"] == "rl_lifts_edge")
    n = (preset.passk_problems or preset.kshot_problems) * len(summary["rungs"])
    assert edge["details"]["pooled"]["problems"] == n
    # the parser meets real chains (the smoke 20k rung may write none that parse)
    assert max(r["chains_before"]["steps"] for r in summary["rungs"]) > 0
    reuse = summary["arms"]["reuse"]
    assert [a["tau"] for a in reuse] == [1, 4, 16]
    assert [a["unique_prompts"] for a in reuse] == sorted((a["unique_prompts"] for a in reuse),
                                                          reverse=True)
    assert {a["reward"] for a in summary["arms"]["reward"]} == {"custom_flexible", "strict"}
    strict = next(a for a in summary["arms"]["reward"] if a["reward"] == "strict")
    last = [x for x in _metrics(strict["run_dir"]) if x.get("test_loss") is not None][-1]
    assert strict["final_test_loss"] == pytest.approx(last["test_loss"])


def _evals(run_dir) -> list[dict]:
    return [x for x in _metrics(run_dir) if x.get("test_loss") is not None]


def _jsonl(eval_dir) -> list[dict]:
    return [json.loads(x) for x in (Path(eval_dir) / "completions.jsonl").read_text().splitlines()]


def _acc(eval_dir) -> dict:
    s = json.loads((Path(eval_dir) / "summary.json").read_text())
    return s["results"]["0"]["checks"][s["primary_check"]]


def test_findings_recomputed_from_the_runs_metrics(smoke):
    """Three findings recomputed here from metrics.jsonl alone, without rlscale.findings."""
    from scipy.stats import spearmanr

    out, summary = smoke
    f = {x["id"]: x for x in summary["findings"]}
    arm = summary["settings"]["arm_rung"].removeprefix("micro:")
    # data_reuse: final test loss at the largest tau minus tau 1, within 2 SE of the
    # per-problem differences (both runs score the same held-out problems)
    one, far = _evals(out / "runs" / arm)[-1], _evals(out / "runs" / f"{arm}-tau16")[-1]
    diff = far["test_loss"] - one["test_loss"]
    d = (np.array(one["test_right"]["custom_flexible"]) / one["test_samples"]
         - np.array(far["test_right"]["custom_flexible"]) / far["test_samples"])
    se = d.std(ddof=1) / math.sqrt(len(d))
    assert len(d) == one["test_problems"] and f["data_reuse"]["details"]["arms"][-1]["se_paired"]
    assert f["data_reuse"]["value"] == pytest.approx(diff)
    assert f["data_reuse"]["interval"] == pytest.approx([diff - 2 * se, diff + 2 * se])
    # reward_format: custom_flexible accuracy of the custom_flexible run minus the strict run's
    strict = _evals(out / "runs" / f"{arm}-strict")[-1]
    assert f["reward_format"]["value"] == pytest.approx(
        one["test_acc_custom_flexible"] - strict["test_acc_custom_flexible"])
    # k_increases_with_n: Spearman rho of N vs the seed-mean log-log slope on C
    ns, ks = [], []
    for r in summary["rungs"]:
        tag = r["rung"].removeprefix("micro:")
        slopes = []
        for run in (tag, f"{tag}-s1"):
            ev = [e for e in _evals(out / "runs" / run) if e["step"] > 0 and e["test_loss"] > 0]
            if len(ev) >= 2:
                slopes.append(-np.polyfit(np.log10([e["C_paper"] for e in ev]),
                                          np.log10([e["test_loss"] for e in ev]), 1)[0])
        if slopes:
            ns.append(r["N"]), ks.append(sum(slopes) / len(slopes))
    if len(set(ks)) > 1:
        assert f["k_increases_with_n"]["value"] == pytest.approx(spearmanr(ns, ks).statistic)


def test_rerun_skips_finished_work_and_other_settings_are_refused(smoke):
    out, summary = smoke
    logs = ("metrics.jsonl", "completions.jsonl")
    before = {p: p.stat().st_mtime_ns for name in logs for p in out.rglob(name)}
    assert len([p for p in before if "evals" in p.parts]) >= 10
    settings = json.loads((out / "study.json").read_text())
    again = study(_smoke(), out, progress=False)
    assert {p: p.stat().st_mtime_ns for name in logs for p in out.rglob(name)} == before
    assert again["rungs"] == summary["rungs"]
    # a re-summary runs no job: the wall time (up to the last job, in study.json and
    # summary.json alike) and the job times are the first run's; only the report's time is new
    assert again["wall_s"] == settings["wall_s"] == summary["wall_s"] > 0
    assert settings["report_s"] > 0
    now = json.loads((out / "study.json").read_text())
    assert {k: v for k, v in now.items() if k != "report_s"} == {
        k: v for k, v in settings.items() if k != "report_s"}
    assert len(settings["job_s"]) >= 10
    other = dataclasses.replace(_smoke(), slip_frac=_smoke().slip_frac + 0.1)
    with pytest.raises(UserError, match="other settings"):
        study(other, out, progress=False)
    # a study saved before a preset field existed resumes as if it had its default; one saved
    # without a field this preset sets otherwise (transfer_more) is another study
    at_default = [f.name for f in dataclasses.fields(_smoke()) if f.default is not
                  dataclasses.MISSING and getattr(_smoke(), f.name) == f.default]
    assert "token_power" in at_default and "transfer_more" not in at_default
    for drop, same in ((at_default, True), (["transfer_more"], False)):
        older = {**settings, "preset": {k: v for k, v in settings["preset"].items()
                                        if k not in drop}}
        (out / "study.json").write_text(json.dumps(older))
        if same:
            assert study(_smoke(), out, progress=False)["rungs"] == summary["rungs"]
        else:
            with pytest.raises(UserError, match="other settings"):
                study(_smoke(), out, progress=False)
    (out / "study.json").write_text(json.dumps(settings))


def test_a_copied_study_resumes_at_its_new_place(smoke, tmp_path, capsys):
    """`cp -a OLD NEW`, OLD gone, `rlscale study --out NEW`: the jobs left unfinished (an eval
    and a baseline whose summaries are missing) resume from their completions, no job computes
    again, no file under NEW names OLD and OLD is not recreated; so too a study written before
    the root was recorded (its root read from its jobs' task path)."""
    import os
    import shutil

    from rlscale.cli import main

    out, summary = smoke
    new, older, away = tmp_path / "new", tmp_path / "older", tmp_path / "away"
    shutil.copytree(out, new, symlinks=True)  # copy2: mtimes kept, as cp -a
    shutil.copytree(out, older, symlinks=True)
    settings = json.loads((older / "study.json").read_text())
    settings.pop("root", None)
    (older / "study.json").write_text(json.dumps(settings))
    for unfinished in ("evals/20k/20k/passk/summary.json", "baseline/60k/summary.json"):
        (new / unfinished).unlink()
    logs = ("metrics.jsonl", "completions.jsonl", "loss.jsonl", "model.safetensors")
    before = {p: p.stat().st_mtime_ns for name in logs for p in new.rglob(name)}
    os.rename(out, away)  # the original is gone while the copies resume
    try:
        capsys.readouterr()
        assert main(["study", "--preset", "smoke", "--out", str(new)]) == 0
        printed = capsys.readouterr().out
        assert f"study moved from {out} to {new}: " in printed
        assert sorted(re.findall(r"(\S+): done in", printed)) == ["baseline:60k",
                                                                  "evals:20k:after"]
        assert main(["study", "--preset", "smoke", "--out", str(older)]) == 0
        assert f"study moved from {out} to {older}: " in capsys.readouterr().out
        assert not out.exists()
    finally:
        shutil.rmtree(out, ignore_errors=True)  # recreated by a failure above: keep the fixture
        os.rename(away, out)
    assert {p: p.stat().st_mtime_ns for name in logs for p in new.rglob(name)} == before
    for copy in (new, older):
        for f in copy.rglob("*"):
            assert not f.is_file() or str(out).encode() not in f.read_bytes(), f
        moved = json.loads((copy / "summary.json").read_text())
        assert moved["rungs"] == json.loads(json.dumps(summary["rungs"]).replace(
            str(out), str(copy)))
        assert json.loads((copy / "study.json").read_text())["root"] == str(copy)
    assert json.loads((new / "evals/20k/20k/passk/config.json").read_text())["model"] == str(
        new / "runs" / "20k" / "policy")
    # moved once: a rerun rewrites nothing and says nothing of a move
    assert main(["study", "--preset", "smoke", "--out", str(new)]) == 0
    assert "moved" not in capsys.readouterr().out


def test_cli_rejects_bad_flags(tmp_path):
    from rlscale.cli import main

    assert main(["study", "--preset", "huge", "--out", str(tmp_path)]) == 2
    assert main(["study", "--workers", "0", "--out", str(tmp_path / "w")]) == 2


def test_task_file_holds_every_evals_problems(tmp_path):
    from rlscale.study_plan import write_task

    preset = dataclasses.replace(PRESETS["smoke"], heldout=10, kshot_problems=30,
                                 passk_problems=20, n_train=50)
    write_task(preset, tmp_path)
    lines = (tmp_path / "task" / "test.jsonl").read_text().splitlines()
    assert len(lines) == 30  # the largest eval, not only the RL test loss's held-out problems


def test_replicates_table_the_seeds_of_real_summaries(smoke, tmp_path, capsys):
    """`rlscale replicates` over the smoke study and a copy of it as another seed, with one
    finding's verdict flipped: counts per finding, per-seed checks that agree with the
    summary's own flags, and one-line errors on bad input."""
    from rlscale.cli import main
    from rlscale.replicates import checks

    out, summary = smoke
    other = json.loads(json.dumps(summary))
    other["seed"] = summary["seed"] + 1
    first = next(f for f in other["findings"] if f["reproduced"] is not None)
    first["reproduced"] = not first["reproduced"]
    gone = other["findings"].pop()  # a summary written before this finding existed
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "summary.json").write_text(json.dumps(other))
    md = tmp_path / "rep.md"
    assert main(["replicates", str(out), str(tmp_path / "s1"), "--out", str(md)]) == 0
    t = json.loads(md.with_suffix(".json").read_text())
    assert t["seeds"] == [summary["seed"], summary["seed"] + 1]
    row = next(f for f in t["findings"] if f["id"] == first["id"])
    assert row["reproduced_in"] == 1 and row["failed_in"] == 1
    row = next(f for f in t["findings"] if f["id"] == gone["id"])
    assert row["absent_in"] == 1 and row["absent_at"] == [1]
    assert row["untestable_in"] == (gone["reproduced"] is None)  # the other seed's own verdict
    assert f"| {gone['id']} | " in md.read_text() and "| absent |" in md.read_text()
    c = checks(summary)
    assert (c["rungs_gain_above_2se"] == c["n_rungs"]) == summary["all_rungs_improved"]
    assert c["baselines_ordered"] == bool(summary["baseline_order"]["increasing"] and summary[
        "baseline_order"]["each_step_above_combined_se"])
    assert c["baselines_ordered_paired"] == bool(summary["baseline_order"]["increasing"] and
                                                 summary["baseline_order"]["each_step_above_paired_se"])
    greedy = next(f for f in summary["findings"] if f["id"] == "greedy_gain")["details"]
    assert c["greedy_falls"] == sum(x["down"] for x in greedy["per_rung"].values())
    assert c["gain_se_paired"] == [pytest.approx(r["gain"] / r["gain_se_paired"])
                                   if r["gain_se_paired"] else None for r in summary["rungs"]]
    assert md.read_text() in capsys.readouterr().out
    # the edge of competence: every rung of both seeds, rho from the summaries' own numbers
    pts = t["edge"]["points"]
    assert len(pts) == 2 * len(summary["rungs"])
    assert [p["worked_advantage"] for p in pts[:len(summary["rungs"])]] == [
        r["answers_before"]["worked_advantage"] for r in summary["rungs"]]
    assert "worked advantage" in md.read_text()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text("{not json")
    other["preset"] = "gpu"
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "summary.json").write_text(json.dumps(other))
    for dirs, words in (([out], "at least 2"), ([out, tmp_path / "bad"], "bad"),
                        ([out, tmp_path / "gpu"], "preset"), ([out, out], "same seed"),
                        ([out, tmp_path / "none"], "no such file")):
        assert main(["replicates", *map(str, dirs)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_a_failing_job_stops_the_study_with_one_line(smoke, tmp_path):
    """A job that fails on bad input (here an eval directory holding other settings) stops the
    study with one line and exit 2: the idle worker the scheduler interrupts leaves quietly
    instead of printing its queue read's KeyboardInterrupt traceback."""
    import shutil
    import subprocess
    import sys

    out, _ = smoke
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    ev = copy / "evals" / "20k" / "20k" / "passk"
    cfg = json.loads((ev / "config.json").read_text())
    (ev / "config.json").write_text(json.dumps({**cfg, "task": "arith:easy"}))
    (ev / "summary.json").unlink()
    for other in copy.glob("evals/*/*/passk/summary.json"):  # the other eval jobs run again
        other.unlink()  # (from their completions: at once), so the second worker idles
    proc = subprocess.run([sys.executable, "-m", "rlscale.cli", "study", "--preset", "smoke",
                           "--out", str(copy)], capture_output=True, text=True, timeout=300,
                          cwd=str(Path(__file__).parent.parent))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and "other settings" in lines[0], lines
