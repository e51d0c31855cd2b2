"""The report and the findings table on synthetic study trees (no models): files laid out as the
study's jobs write them, with test-loss curves drawn from a known law, so each finding has a
known answer, and a reversed ladder must flip the verdicts."""

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from rlscale import findings as F
from rlscale.files import atomic_write_json
from rlscale.report import analyse, collect, run_settings, write_report
from rlscale.report_text import header
from rlscale.study import PRESETS, plan

STEPS, EVERY, BATCH = 40, 5, 32


def _curve(n, eff, seed, tau=1, reward="custom_flexible"):
    """metrics.jsonl rows of a run of size n behaving like size eff: log10 L = -k log10 C + E,
    k = 0.3 / (1 + 5e4 / eff), with the loss at the first evaluation 0.9 (eff / 1e4)^-0.15.
    A strict-reward run ends 0.08 higher in loss."""
    rng = np.random.default_rng(int(n) + 7 * seed + 13 * tau)
    k, first = 0.3 / (1 + 5e4 / eff), 0.9 * (eff / 1e4) ** -0.15
    c1 = 6.0 * n * 1500 * EVERY
    rows = []
    for step in range(0, STEPS + 1):
        c = 6.0 * n * 1500 * step
        row = {"step": step, "D": BATCH * step, "C_paper": c, "C_itemized": 1.1 * c,
               "unique_prompts": math.ceil(BATCH * step / tau)}
        if step % EVERY == 0:
            loss = first if step == 0 else first * (c / c1) ** -k * math.exp(rng.normal(0, 0.005))
            loss += 0.08 if reward == "strict" and step else 0.0
            row.update(test_loss=loss, test_loss_se=0.01, test_acc_custom_flexible=1 - loss,
                       test_acc_strict=1 - loss - (0.2 if step == 0 else 0.0),
                       test_acc_flexible=1 - loss)
        rows.append(row)
    return rows


def _check(acc, n_samples=32, levels=(1, 2, 3)):
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= n_samples]
    return {"accuracy": acc, "se": 0.01, "test_loss": 1 - acc,
            "pass_at_k": {str(k): min(1.0, acc * (1 + 0.2 * math.log2(k))) for k in ks},
            "pass_at_k_se": {str(k): 0.01 for k in ks},
            "by_level": {str(lv): {"accuracy": acc / lv, "se": 0.02, "n_problems": 10}
                         for lv in levels}}


def _summary(check, shots=(0,)):
    return {"primary_check": "custom_flexible",
            "results": {str(s): {"n_problems": 30, "checks": {"custom_flexible": check}}
                        for s in shots}}


def build(out: Path, reverse: bool = False):
    """A finished study tree for a 4-rung preset; returns (preset, jobs)."""
    preset = dataclasses.replace(PRESETS["cpu"], transfer_task="arith:style=words",
                                 transfer_more=(("transfer_far", "arith:style=expr"),),
                                 passk_samples=32, rl_seeds=2)
    jobs = plan(preset, out)
    sizes = {}
    for j in jobs:
        if j.kind == "pretrain":
            n = float(10 ** (4 + len(sizes) * 0.5))
            sizes[j.meta["rung"]] = n
            atomic_write_json(Path(j.out) / "pretrain.json", {
                "N": n, "tokens": 20 * n, "flops": 120 * n * n, "final_loss": 1.0, "wall_s": 1.0,
                "done": True})
    order = sorted(sizes.values())
    for j in jobs:
        n = sizes[j.meta["rung"]]
        rank = order.index(n)
        eff = order[len(order) - 1 - rank] if reverse else n
        skill = 0.2 + 0.1 * (3 - rank if reverse else rank)
        if j.kind == "rl":
            rows = _curve(n, eff, j.meta["seed"], j.meta["tau"], j.meta["reward"])
            Path(j.out).mkdir(parents=True, exist_ok=True)
            atomic_write_json(Path(j.out) / "config.json", {**j.params, "N": n})
            (Path(j.out) / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        elif j.kind == "baseline":
            atomic_write_json(Path(j.out) / "summary.json", _summary(_check(skill), range(6)))
        elif j.kind == "evals":
            after = j.meta["when"] == "after"
            for e in j.params["evals"]:
                acc = skill + (0.1 if after and e["sub"] != "passk" else 0.0)
                acc -= 0.2 if after and e["sub"] == "transfer_far" else 0.0  # RL hurts there
                atomic_write_json(Path(j.out) / e["sub"] / "summary.json",
                                  _summary(_check(acc, e["samples"])))
    atomic_write_json(out / "study.json", {"wall_s": 1.0, "job_s": {}})
    return preset, jobs


@pytest.fixture(scope="module")
def ordered(tmp_path_factory):
    out = tmp_path_factory.mktemp("ordered")
    preset, jobs = build(out)
    return out, write_report(preset, jobs, out, n_boot=20)


def _by_id(summary):
    return {f["id"]: f for f in summary["findings"]}


def test_findings_hold_every_id_with_its_fields(ordered):
    _, s = ordered
    ids = _by_id(s)
    for need in ("size_compute_efficiency", "size_data_efficiency", "k_increases_with_n",
                 "law_fit", "data_reuse", "gain_vs_size", "reward_format",
                 "rl_sharpens_or_expands"):
        f = ids[need]
        assert {"id", "claim", "statistic", "value", "interval", "reproduced"} <= set(f)
        assert f["reproduced"] in (True, False, None)


def test_a_ladder_drawn_from_the_law_reproduces_the_paper(ordered):
    out, s = ordered
    f = _by_id(s)
    assert f["size_compute_efficiency"]["reproduced"] is True
    assert f["size_data_efficiency"]["reproduced"] is True
    assert f["k_increases_with_n"]["value"] == pytest.approx(1.0)
    assert f["law_fit"]["details"]["r2"]["C_paper"] > 0.9
    assert f["law_fit"]["value"] < 0.1
    # the largest rung predicted from the three below it: in D these curves are in the
    # extrapolation's family (E(N) = e0 + e1 log N + k(N) x0, x0 the first evaluation's D); in
    # C their first evaluation sits at C ~ N, so E(N) gains a k(N) log N term, which only the
    # per-parameter pivot holds (the fixed pivot's MARE here was 0.16 before it was a
    # candidate). Three training sizes cannot score forms (inner fits of two sizes leave the
    # pivot free): compute's fixed order, the per-parameter pivot first, decides
    x = f["size_extrapolation"]["details"]["fits"]
    assert x["D"]["size"] == pytest.approx(10 ** 5.5) and x["D"]["mare"] < 0.1
    assert x["C_paper"]["choice"]["law"] == "loglinear_kn_param_pn"
    assert x["C_paper"]["chosen_by"].startswith("the first identified candidate")
    assert x["C_paper"]["mare"] < 0.02
    assert f["size_extrapolation"]["reproduced"] is True
    assert f["data_reuse"]["reproduced"] is True
    assert f["reward_format"]["reproduced"] is True  # cf ends 0.08 above strict, SE 0.014
    assert f["rl_sharpens_or_expands"]["reproduced"] is None  # pass@k unchanged: not sharpened
    assert f["greedy_gain"]["reproduced"] is True and f["transfer"]["reproduced"] is True
    # a further family, its own finding from its own evals: every rung 0.1 lower after RL
    far = f["transfer_far"]
    assert far["reproduced"] is False and far["value"] == pytest.approx(-0.1)
    assert "arith:style=expr" in far["claim"] and f["transfer"]["value"] == pytest.approx(0.1)
    assert all(r["transfer_more"]["transfer_far"]["before"]["accuracy"]
               - r["transfer_more"]["transfer_far"]["after"][0]["accuracy"] == pytest.approx(0.1)
               for r in s["rungs"])
    report = (out / "report.md").read_text()
    assert "never seen by RL; finding `transfer`" in report
    assert "Transfer to `arith:style=expr` (never seen by RL; finding `transfer_far`)" in report
    fit = s["fits"]["loglinear_kn_C"]
    assert fit["K_max"] == pytest.approx(0.3, rel=0.2) and fit["N0"] == pytest.approx(5e4, rel=0.5)
    lo, hi = fit["intervals"]["N0"]
    assert lo <= fit["N0"] <= hi


def test_size_extrapolation_in_parallel_is_the_serial_one(ordered, monkeypatch):
    """The report runs the C and D extrapolations in two processes (4+ sizes, 2+ cores); on
    one core they run in turn: the same finding, to the last digit (each is seeded)."""
    import os

    from rlscale import findings_law

    out, s = ordered
    preset, jobs = build(out)  # the same tree again: collect() reads it
    curves = collect(preset, jobs)["curves"]
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    serial = findings_law.size_extrapolation(curves, n_boot=20)
    assert serial == _by_id(s)["size_extrapolation"]


def test_a_reversed_ladder_does_not(tmp_path):
    preset, jobs = build(tmp_path, reverse=True)
    _, table, _ = analyse(collect(preset, jobs), preset.transfer_task, n_boot=2)
    f = _by_id({"findings": table})
    assert f["size_compute_efficiency"]["reproduced"] is False
    assert f["size_data_efficiency"]["reproduced"] is False
    # the largest rung learns like the smallest: the law of the others mispredicts it
    assert f["size_extrapolation"]["reproduced"] is False
    assert f["size_extrapolation"]["value"] > 0.1


def test_summary_rungs_and_report_text(ordered):
    out, s = ordered
    for r in s["rungs"]:
        for key in ("baseline_greedy", "final_greedy", "pass_at_k_before", "pass_at_k_after",
                    "tokens_per_param", "final_acc_seeds", "rl_models", "by_level_before"):
            assert key in r
        assert set(r["pass_at_k_before"]) == {"1", "2", "4", "8", "16", "32"}
        assert r["final_greedy"] == pytest.approx(r["baseline_greedy"] + 0.1)
        assert len(r["final_acc_seeds"]) == 2
    md = (out / "report.md").read_text()
    assert "rollout temperature 1.0, one update per step, no KL" in md  # from config.json
    for f in s["findings"]:
        assert f"`{f['id']}`" in md
    for link in re.findall(r"\]\(([^)]+)\)", md):
        assert (out / link).stat().st_size > 1000
    for name in ("pass_at_k", "accuracy_by_level", "loss_vs_compute", "k_vs_n", "kshot"):
        assert name in s["figures"]
    assert not list(out.glob(".*.tmp"))  # figures land whole (atomic writes)


def test_report_says_which_rungs_pretrained_on_bf16_matmul_inputs(ordered):
    _, s = ordered
    assert all(r["pretrain_matmul_bf16"] is False for r in s["rungs"])
    assert "bf16 inputs" not in "\n".join(header(s))
    s = {**s, "rungs": [dict(r, pretrain_matmul_bf16=i == 0) for i, r in enumerate(s["rungs"])]}
    assert f"took bf16 inputs (fp32 sums) on 1 of {len(s['rungs'])} rungs" in "\n".join(header(s))


def test_run_settings_come_from_config_json(tmp_path):
    preset, jobs = build(tmp_path)
    rl = next(j for j in jobs if j.kind == "rl")
    cfg = json.loads((Path(rl.out) / "config.json").read_text())
    cfg.update(kl_coef=0.001, mini_batch_size=cfg["batch_size"] // 4)
    (Path(rl.out) / "config.json").write_text(json.dumps(cfg))
    text = "\n".join(header({"settings": dataclasses.asdict(preset), "preset": preset.name,
                             "task": preset.task, "wall_s": 1.0, "rungs": [{"seeds": [0]}],
                             "run_settings": run_settings(collect(preset, jobs)["curves"])}))
    assert "KL coefficient [0.0, 0.001]" in text and "[1, 4] updates per step" in text


def test_fixed_x_comparisons_only_inside_both_ranges():
    small = {"run": "a", "rung": "a", "N": 1.0, "seed": 0,
             "evals": [{"step": s, "C_paper": 10.0 * s, "test_loss": 1 / (1 + s), "test_loss_se": 0.01}
                       for s in range(0, 5)]}
    large = {**small, "run": "b", "rung": "b", "N": 3.0,
             "evals": [{**e, "C_paper": 30.0 * e["step"], "test_loss": 0.4 * e["test_loss"]}
                       for e in small["evals"]]}
    rows = F.fixed_x_comparisons([small, large], "C_paper")
    assert rows and all(30.0 <= r["x"] <= 40.0 for r in rows)
    assert all(r["diff"] < 0 for r in rows)
    far = {**large, "evals": [{**e, "C_paper": 1000.0 * e["step"]} for e in large["evals"]]}
    assert F.fixed_x_comparisons([small, far], "C_paper") == []


def test_baseline_order_pairs_the_same_problems():
    from rlscale.findings_evals import baseline_order

    skill = (np.arange(300) + 0.5) / 300  # a problem's difficulty, shared by every rung
    scores, rungs = [], []
    for i, p in enumerate((0.3, 0.45, 0.48, 0.8)):
        s = {j: float(skill[j] < p) for j in range(300)}
        acc = np.mean(list(s.values()))
        scores.append(s)
        rungs.append({"rung": f"r{i}", "baseline_greedy": acc,
                      "baseline_greedy_se": math.sqrt(acc * (1 - acc) / 300)})
    o = baseline_order(rungs, scores)
    assert o["increasing"] and o["room"]  # the largest, 0.8, leaves RL room
    assert [s["above_paired_se"] for s in o["steps"]] == [True, True, True]
    # nested problems: a 0.03 step is far above its paired SE, not above the combined SE
    assert not o["steps"][1]["above_combined_se"]
    assert o["steps"][1]["se_paired"] < o["steps"][1]["se_combined"] / 2
    flipped = baseline_order(rungs[::-1], scores[::-1])
    assert not flipped["increasing"] and not flipped["each_step_above_paired_se"]


def _gain_curves(gains: dict[float, list[float]]) -> list[dict]:
    """Minimal main-run curves: test loss 0.8 at step 0, 0.8 - gain at the last evaluation."""
    return [{"N": n, "seed": s, "evals": [{"step": 0, "test_loss": 0.8},
                                           {"step": 60, "test_loss": 0.8 - g}]}
            for n, gs in gains.items() for s, g in enumerate(gs)]


def test_gain_vs_size_fits_a_power_law_or_tests_the_direction_by_rank():
    falling = F.gain_vs_size(_gain_curves({1e4: [0.2, 0.21], 1e5: [0.12, 0.13],
                                           1e6: [0.08, 0.07]}))
    assert falling["reproduced"] is True and falling["value"] < 0  # b < 0: the seed study's
    assert falling["details"]["r2"] > 0.9 and falling["details"]["rho"] == pytest.approx(-1.0)
    # a rung that loses under RL: no power law, but gains rising with N contradict the claim
    rising = F.gain_vs_size(_gain_curves({2e4: [-0.035, -0.042], 6e4: [0.0, 0.03],
                                          2e5: [0.064, 0.074], 6e5: [0.172, 0.152]}))
    assert rising["reproduced"] is False and rising["value"] == pytest.approx(1.0)
    assert rising["interval"] == [1.0, 1.0] and "r2" not in rising["details"]
    assert "rho" in rising["statistic"] and "no_power_law" in rising["details"]
    # the table says which way the data point when they contradict the claim, and only then
    from rlscale.report_text import shown
    assert shown(rising).startswith("the opposite here, larger rungs gain more")
    assert "opposite" not in shown(falling)
    # every mean gain positive, one seed of the bottom rung not: the law on the means is
    # reported, and with half of the seed draws lacking a law the verdict is rho's
    one_draw = F.gain_vs_size(_gain_curves({6e4: [0.0, 0.03], 2e5: [0.064, 0.074],
                                            6e5: [0.172, 0.152], 2e6: [0.3, 0.31]}))
    d = one_draw["details"]
    assert d["b"] > 0 and d["draws_with_a_law"] == pytest.approx(0.5) and d["r2"] > 0.8
    assert "rho" in one_draw["statistic"] and one_draw["reproduced"] is False
    # seeds that disagree on the order: the direction is not determined
    mixed = F.gain_vs_size(_gain_curves({2e4: [-0.05, 0.10], 6e4: [0.02, 0.03],
                                         2e5: [0.0, 0.08]}))
    assert mixed["reproduced"] is None


def test_budget_rule_in_words():
    """The report's header states the pre-training budget rule (Preset.token_power)."""
    from rlscale.report_text import _budget

    equal = {"rungs": [{"tokens": 3_000_000}, {"tokens": 3_000_000}], "token_power": 0.0}
    assert _budget(equal) == "every rung pre-trained on the same 3M tokens, cosine lr"
    tilted = {"rungs": [{"tokens": 7_100_000}, {"tokens": 5_000_000}], "token_power": 0.1,
              "pretrain_schedule": "wsd"}
    assert _budget(tilted).startswith("pre-training tokens = 5M x (N of the largest rung / N)^0.1")
    assert _budget(tilted).endswith("warmup-stable-decay lr (decay over the last 20% of the steps)")


def test_rl_sharpens_is_judged_on_the_se_paired_over_problems():
    """Before and after RL score the same problems, so a change's SE is that of the per-problem
    differences: a uniform lift of 0.05 over problems of shared, spread difficulty is resolved
    paired and lost in the combined SE of two independent means."""
    from rlscale.findings_evals import paired_se, rl_sharpens_or_expands

    rng = np.random.default_rng(0)
    base = {i: float(v) for i, v in enumerate(rng.uniform(0.05, 0.9, 64))}
    after = [{i: v + 0.05 + float(rng.normal(0, 0.02)) for i, v in base.items()} for _ in range(2)]
    d = [np.mean([a[i] for a in after]) - base[i] for i in base]
    ps = paired_se(base, after)
    assert ps == pytest.approx(np.std(d, ddof=1) / 8)
    assert paired_se(base, []) is None and paired_se({0: 1.0}, [{0: 0.5}]) is None
    assert paired_se({0: 0.1, 1: 0.2, 2: 0.3}, [{1: 0.5, 2: 0.7}]) == pytest.approx(
        np.std([0.3, 0.4], ddof=1) / math.sqrt(2))  # the problems every side scored

    def summary(vals):
        v = list(vals.values())
        return {"pass_at_k": {"1": float(np.mean(v)), "32": 0.9},
                "pass_at_k_se": {"1": float(np.std(v, ddof=1) / 8), "32": 0.03}}

    row = {"rung": "micro:x", "N": 1e5, "before": summary(base),
           "after": [summary(a) for a in after]}
    unpaired = rl_sharpens_or_expands([row])
    assert unpaired["reproduced"] is None and not unpaired["details"]["rungs"][0]["se_paired"]
    paired = rl_sharpens_or_expands([{**row, "paired_se": {"1": ps, "32": 0.01}}])
    r = paired["details"]["rungs"][0]
    assert paired["reproduced"] is True and r["se_paired"] and r["se1"] == ps
    assert r["se1_combined"] == unpaired["details"]["rungs"][0]["se1"] > 3 * ps


def _greedy_eval(d, scores: dict[int, float], check: str = "custom_flexible"):
    """An eval directory as `rlscale eval` writes it: summary.json and 0-shot completions."""
    import json

    from rlscale.files import atomic_write_json

    d.mkdir(parents=True)
    acc = float(np.mean(list(scores.values())))
    se = float(np.std(list(scores.values()), ddof=1) / math.sqrt(len(scores)))
    atomic_write_json(d / "summary.json", {"primary_check": check, "results": {"0": {
        "checks": {check: {"accuracy": acc, "se": se}}}}})
    (d / "completions.jsonl").write_text("".join(
        json.dumps({"index": i, "shots": 0, "completions": ["x"], "scores": {check: [v]}}) + "\n"
        for i, v in scores.items()))
    return acc, se


def test_greedy_gain_and_transfer_pair_the_problems_from_the_evals_files(tmp_path):
    """A greedy lift of 0.04 where RL fixes a few problems and breaks none: resolved on the SE
    of the per-problem changes (read from the evals' completions.jsonl), not on the combined
    SE of two independent accuracies, which is kept beside it."""
    from rlscale.findings_evals import greedy_gain, transfer
    from rlscale.report import paired_greedy_se, paired_rows, zero_shot_scores

    rng = np.random.default_rng(1)
    base = {i: float(v) for i, v in enumerate(rng.uniform(size=400) < 0.5)}
    wrong = [i for i, v in base.items() if v == 0]
    fixed = [{**base, **{int(i): 1.0 for i in rng.choice(wrong, 16, replace=False)}}
             for _ in range(2)]
    b_acc, b_se = _greedy_eval(tmp_path / "base", base)
    after = [_greedy_eval(tmp_path / f"after{s}" / "greedy", f) for s, f in enumerate(fixed)]
    for name in ("before", "after0", "after1"):  # the transfer family: the same numbers
        _greedy_eval(tmp_path / name / "transfer", base if name == "before" else fixed[0])
    se = paired_greedy_se(tmp_path / "base", [tmp_path / "after0" / "greedy",
                                              tmp_path / "after1" / "greedy"])
    d = [np.mean([f[i] for f in fixed]) - base[i] for i in base]
    assert se == pytest.approx(np.std(d, ddof=1) / 20)
    rows = paired_rows(zero_shot_scores(tmp_path / "base", "custom_flexible"), "custom_flexible",
                       tmp_path / "before",
                       [tmp_path / "after0", tmp_path / "after1"])
    assert rows["final_greedy_se_paired"] == pytest.approx(se)
    assert paired_greedy_se(tmp_path / "base", []) is None
    assert paired_greedy_se(tmp_path / "nowhere", [tmp_path / "after0" / "greedy"]) is None

    a_acc = float(np.mean([a for a, _ in after]))
    a_se = math.sqrt(sum(s * s for _, s in after)) / 2
    rung = {"rung": "micro:x", "baseline_greedy": b_acc, "baseline_greedy_se": b_se,
            "final_greedy": a_acc, "final_greedy_se": a_se}
    combined = greedy_gain([rung])
    paired = greedy_gain([{**rung, **rows}])
    x = paired["details"]["per_rung"]["micro:x"]
    assert a_acc - b_acc == pytest.approx(0.04)
    assert combined["reproduced"] is False and paired["reproduced"] is True
    assert x["se_paired"] and x["se"] == pytest.approx(se) and x["se_combined"] > 3 * se
    assert not x["down"]
    # the other way round (RL breaks those problems): a fall beyond 2 paired SE, named
    fell = greedy_gain([{**rung, "baseline_greedy": a_acc, "final_greedy": b_acc, **rows}])
    assert fell["reproduced"] is False and fell["details"]["per_rung"]["micro:x"]["down"]
    from rlscale.report_text import shown
    assert shown(fell).endswith("falls by > 2 SE: micro:x")

    tb, ta = _greedy_eval(tmp_path / "tb", base), _greedy_eval(tmp_path / "ta", fixed[0])
    t_row = {"rung": "micro:x", "transfer_before": {"accuracy": tb[0], "se": tb[1]},
             "transfer_after": [{"accuracy": ta[0], "se": ta[1]}] * 2}
    t_unpaired = transfer([t_row], "arith:levels=5")
    t_paired = transfer([{**t_row, **rows}], "arith:levels=5")
    assert t_unpaired["reproduced"] is None and not t_unpaired["details"]["se_paired"]
    assert t_paired["reproduced"] is True and t_paired["details"]["se_paired"]
    assert t_paired["details"]["se"] < t_paired["details"]["se_combined"] / 3


def test_rl_below_edge_orders_the_trading_rungs_below_the_lifting_ones():
    """A rung trades when its greedy accuracy falls by > 2 SE while pass@1 at the rollout
    temperature does not fall; lifts when both rise. The claim holds when the trading rungs are
    the small ones, fails when a trading rung sits above a lifting one, and is untested when no
    rung trades."""
    from rlscale.findings_evals import rl_below_edge

    def case(changes):  # per rung (ascending N): (greedy change, pass@1 change), SEs 0.01
        rungs = [{"rung": f"r{i}", "N": 10.0 ** (4 + i),
                  "answers_before": {"worked_advantage": 0.1 * i}} for i in range(len(changes))]
        greedy = {"details": {"per_rung": {f"r{i}": {"change": g, "se": 0.01}
                                           for i, (g, _) in enumerate(changes)}}}
        sharp = {"details": {"rungs": [{"rung": f"r{i}", "d_pass1": p, "se1": 0.01}
                                       for i, (_, p) in enumerate(changes)]}}
        return rl_below_edge(rungs, sharp, greedy)

    held = case([(-0.05, 0.02), (0.06, 0.04), (0.2, 0.15)])
    assert held["reproduced"] is True
    assert [(r["trades"], r["lifts"]) for r in held["details"]["rungs"]] == [
        (True, False), (False, True), (False, True)]
    assert held["value"] == pytest.approx(-0.07)
    assert held["interval"] == pytest.approx([-0.07 - 2 * math.hypot(0.01, 0.01),
                                              -0.07 + 2 * math.hypot(0.01, 0.01)])
    assert held["details"]["rungs"][1]["worked_advantage"] == pytest.approx(0.1)
    # the order reversed: the large rung trades, the small one lifts
    assert case([(0.06, 0.04), (-0.05, 0.0)])["reproduced"] is False
    # sampled pass@1 falls too: the rung does not trade, nothing to test
    assert case([(-0.05, -0.05), (0.06, 0.04)])["reproduced"] is None
    assert case([(0.01, 0.0), (0.06, 0.04)])["reproduced"] is None
    # no evals after RL at all
    assert rl_below_edge([{"rung": "r0", "N": 1e4}], {"details": {}},
                         {"details": {}})["reproduced"] is None


def test_arms_are_judged_on_the_se_paired_over_held_out_problems():
    """Two runs scored on the same 800 problems: a 0.04 rise in test loss at tau 4, where the
    problems' difficulty is shared, is inside 2 combined SE but resolved on the per-problem
    differences (the runs' `test_right`); rows without them keep the combined SE."""
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.95, 800)  # each problem's chance of a right sample, shared by both
    u = rng.uniform(size=800)  # one draw per problem: the runs agree where chance allows
    right_1, right_4 = (u < p).astype(int), (u < p - 0.04).astype(int)  # tau 4 loses ~0.04

    def row(right, check="custom_flexible"):
        acc = right.mean()
        return {"step": 120, "test_loss": 1 - acc, "test_loss_se": right.std(ddof=1) / math.sqrt(800),
                "test_samples": 1, f"test_acc_{check}": acc, "test_acc_strict": acc - 0.1,
                "test_right": {check: right.tolist()}}

    def arm(tau, right, keep=True):
        e = row(right)
        if not keep:
            e.pop("test_right")
        return {"tau": tau, "reward": "custom_flexible", "unique_prompts": 10, "evals": [e, e]}

    se = F.paired_eval_se(row(right_4), row(right_1), "custom_flexible")
    d = right_4 - right_1
    assert se == pytest.approx(d.std(ddof=1) / math.sqrt(800))
    diff = row(right_4)["test_loss"] - row(right_1)["test_loss"]
    combined = math.hypot(row(right_4)["test_loss_se"], row(right_1)["test_loss_se"])
    assert 2 * se < diff < 2 * combined  # the case this test is about
    paired = F.data_reuse([arm(1, right_1), arm(4, right_4)])
    far = paired["details"]["arms"][-1]
    assert paired["reproduced"] is False and far["se_paired"] and far["se"] == pytest.approx(se)
    old = F.data_reuse([arm(1, right_1, keep=False), arm(4, right_4, keep=False)])
    assert old["reproduced"] is True and not old["details"]["arms"][-1]["se_paired"]
    assert old["details"]["arms"][-1]["se"] == pytest.approx(combined)
    # reward arm: custom_flexible training 0.04 above strict training, paired over problems
    cf = {"evals": [row(right_1), row(right_1)]}
    strict = {"evals": [row(right_1), row(right_4)]}
    rf = F.reward_format(cf, strict)
    assert rf["reproduced"] is True and rf["details"]["se_paired"]
    assert F.paired_eval_se(row(right_1), {**row(right_4), "test_right": {}}, "custom_flexible") is None
    assert F.paired_eval_se(row(right_1), row(right_4[:400]), "custom_flexible") is None


def test_one_swap_in_four_rungs_meets_the_k_rule():
    """k_increases_with_n's rule is rho >= 0.8, "monotone up to one swap": four rungs with one
    adjacent swap have rho exactly 0.8, which must not fall below it by float rounding."""
    assert F.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == 0.8
    assert F.spearman([1, 2, 3, 4], [2, 1, 4, 3]) == 0.6

    def run(n, seed, slope):  # a curve whose log-log slope on C is -slope
        cs = [1e9, 1e10, 1e11]
        return {"run": f"r{n}-{seed}", "N": n, "seed": seed, "evals": [
            {"step": i + 1, "C_paper": c, "test_loss": 0.5 * (c / 1e9) ** -slope}
            for i, c in enumerate(cs)]}

    ks = {2e4: 0.01, 6e4: 0.04, 2e5: 0.037, 6e5: 0.12}  # seed 10's per-rung k, rounded
    curves = [run(n, s, k) for n, k in ks.items() for s in (0, 1)]
    f = F.k_increases_with_n(curves, {"error": "no fit"})
    assert f["value"] == 0.8 and f["reproduced"] is True


def test_rl_gain_has_its_se_paired_over_problems_beside_the_combined_one():
    """A rung's gain: per problem the seed mean of (last - first) right share; runs written
    before `test_right` existed give None (the report then shows the combined SE only)."""
    rng = np.random.default_rng(3)
    first = [rng.integers(0, 2, 50) for _ in range(2)]
    last = [np.maximum(f, rng.integers(0, 2, 50)) for f in first]

    def curve(f, la, keep=True):
        ev = [{"step": s, "test_samples": 1, "test_loss": 1 - x.mean(),
               **({"test_right": {"custom_flexible": x.tolist()}} if keep else {})}
              for s, x in ((0, f), (120, la))]
        return {"reward": "custom_flexible", "evals": ev}

    se = F.paired_gain_se([curve(f, la) for f, la in zip(first, last)])
    d = np.mean([la - f for f, la in zip(first, last)], axis=0)
    assert se == pytest.approx(d.std(ddof=1) / math.sqrt(50))
    assert F.paired_gain_se([curve(first[0], last[0]), curve(first[1], last[1], keep=False)]) is None
    assert F.paired_gain_se([]) is None


def test_chain_table_shows_number_word_recall_only_where_the_task_has_words():
    """The chains table's recall column (rlscale.chains: number-words are knowledge, not
    copying) appears when a rung's chains carry it, and is left out for a task without a
    lexicon."""
    from rlscale.report_text import chain_table

    stats = {"bare_expr": 1.0, "operand_right": 0.996, "word_right": 0.675,
             "arithmetic_right": 0.82, "stories_right": 0.6, "expr_right": 0.08, "ceiling": 0.76}
    rungs = [{"rung": "micro:20k", "chains_before": stats,
              "chains_after": {**stats, "word_right": 0.683}}]
    text = "\n".join(chain_table(rungs))
    assert "number-word recalled right" in text and "0.68 -> 0.68" in text
    assert "digit operand copied right" in text and "1.00 -> 1.00" in text
    plain = {**stats, "word_right": None}
    header = next(x for x in chain_table([{"rung": "micro:20k", "chains_before": plain,
                                            "chains_after": plain}]) if x.startswith("| rung"))
    assert "number-word" not in header and "digit operand copied right" in header


def test_rl_lifts_edge_compares_half_known_with_unknown_problems():
    """Of the base-wrong problems, those with a right base sample (half-known) against those
    with none (unknown): the after-RL greedy accuracy on each, seed means per problem, pooled
    over rungs; fixes, expanded and lost counted by hand; too few problems on a side: null."""
    from rlscale.findings_evals import edge_rows, rl_lifts_edge

    def rung(name, n_half, n_never, fixed_half, fixed_never, right=3):
        # problems 0..: n_half half-known, n_never unknown, then 5 the base gets right
        n = n_half + n_never + 5
        base_greedy = {i: float(i >= n_half + n_never) for i in range(n)}
        base_right = {i: (right if i < n_half or i >= n_half + n_never else 0) for i in range(n)}
        # seed 0 fixes the first fixed_* of each side, seed 1 only half of them
        a0 = {i: float(i < fixed_half or n_half <= i < n_half + fixed_never or i >= n_half +
                       n_never) for i in range(n)}
        a1 = {i: float(i < fixed_half // 2 or i >= n_half + n_never) for i in range(n)}
        solved = [{i: (1 if i != 0 else 0) for i in range(n)}, {i: 2 for i in range(n)}]
        styles = {i: "expr" if i % 2 else "words" for i in range(n)}
        return {"rung": name, "edge_problems": edge_rows(base_greedy, base_right, [a0, a1],
                                                         solved, styles, 4)}

    rungs = [rung("r0", 12, 10, 8, 2), rung("r1", 10, 12, 6, 0)]
    f = rl_lifts_edge(rungs)
    half = [1.0] * 4 + [0.5] * 4 + [0.0] * 4 + [1.0] * 3 + [0.5] * 3 + [0.0] * 4
    never = [0.5] * 2 + [0.0] * 8 + [0.0] * 12
    se = math.hypot(np.std(half, ddof=1) / math.sqrt(22), np.std(never, ddof=1) / math.sqrt(22))
    assert f["value"] == pytest.approx(np.mean(half) - np.mean(never))
    assert f["interval"] == pytest.approx([f["value"] - 2 * se, f["value"] + 2 * se])
    assert f["reproduced"] is True
    pooled = f["details"]["pooled"]
    assert (pooled["wrong"], pooled["half_known"], pooled["unknown"]) == (44, 22, 22)
    assert pooled["fixes"] == pytest.approx(sum(half) + sum(never))
    assert pooled["fixes_half_share"] == pytest.approx(sum(half) / (sum(half) + sum(never)))
    # problem 0 (half-known) is never solved by seed 0's samples: half a problem lost a rung;
    # every unknown problem is solved by both policies' samples: expanded
    assert pooled["lost"] == pytest.approx(1.0) and pooled["expanded"] == pytest.approx(22)
    assert set(f["details"]["per_style"]) == {"expr", "words"}
    assert f["details"]["per_rung"]["r0"]["half_known"] == 12
    # RL fixes unknown problems as often as half-known ones: not reproduced
    assert rl_lifts_edge([rung("r0", 12, 12, 6, 6)])["reproduced"] is False
    # too few unknown problems to compare
    assert rl_lifts_edge([rung("r0", 20, 3, 10, 0)])["reproduced"] is None
    # a problem some side did not score is left out; no after-RL evals, no rows
    rows = edge_rows({0: 0.0, 1: 1.0}, {0: 1}, [{0: 1.0, 1: 1.0}], [{0: 1, 1: 1}], {}, 4)
    assert [r["index"] for r in rows] == [0] and rows[0]["base_samples"] == 4
    assert edge_rows({0: 0.0}, {0: 1}, [], [], {}, 4) == []


def test_edge_bins_double_up_to_every_sample():
    """Base-wrong problems binned by the base model's right samples in doubling bins, the last
    one up to all samples right; a bin holds the mean of the rows' after-RL greedy scores;
    base-right rows and empty bins are left out."""
    from rlscale.findings_evals import edge_bins

    def rows(n, after=lambda k: k):
        return [{"base_greedy": 0.0, "base_samples": n, "base_right": k, "after_greedy": after(k)}
                for k in range(n + 1)]

    assert [(b["lo"], b["hi"]) for b in edge_bins(rows(32))] == [
        (0, 0), (1, 1), (2, 3), (4, 7), (8, 15), (16, 32)]
    assert [(b["lo"], b["hi"]) for b in edge_bins(rows(4))] == [(0, 0), (1, 1), (2, 4)]
    assert [(b["lo"], b["hi"]) for b in edge_bins(rows(5))] == [(0, 0), (1, 1), (2, 3), (4, 5)]
    b = edge_bins(rows(8, after=lambda k: float(k % 2)))
    assert [(x["problems"], x["after"]) for x in b] == [(1, 0.0), (1, 1.0), (2, 0.5), (5, 0.4)]
    right = [dict(r, base_greedy=1.0) for r in rows(8)]
    assert edge_bins(right) == [] and edge_bins(rows(8)[2:3] + right)[0]["lo"] == 2
