"""The pre-training / RL split: wsd branches, the joint law, the allocation study, `rlscale plan`."""

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlscale.corpus import Corpus
from rlscale.errors import UserError
from rlscale.pretrain import PretrainConfig, lr_at, pretrain
from rlscale.scaling.joint import FORMS

TASK = "arith:easy,style=expr"
ROWS = 8 * 64


def wsd_cfg(**kw) -> PretrainConfig:
    base = dict(rung="micro:20k", task=TASK, tokens=30 * ROWS, batch_size=8, seq_len=64,
                n_problems=200, checkpoint_every=4, log_every=2, lr=3e-3, schedule="wsd",
                budgets=f"{10 * ROWS},{20 * ROWS}", decay_frac=0.2)
    base.update(kw)
    return PretrainConfig(**base)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_wsd_schedule_stable_then_one_decay_per_budget():
    cfg = wsd_cfg(lr=1e-2, min_lr_frac=0.1, warmup_frac=0.2)
    assert cfg.budget_steps() == [10, 20, 30]
    assert cfg.warmup_steps() == 2  # 20% of the smallest budget, shared by all
    assert [lr_at(s, cfg) for s in range(2)] == pytest.approx([5e-3, 1e-2])
    assert all(lr_at(s, cfg) == 1e-2 for s in range(2, 30))  # the trunk never decays
    assert cfg.decay_start(30) == 24 and cfg.decay_start(10) == 8
    branch = [lr_at(s, cfg, 30) for s in range(24, 30)]
    assert all(a > b for a, b in zip(branch, branch[1:]))
    assert branch[-1] == pytest.approx(1e-3)  # down to the floor at the budget's last step
    with pytest.raises(UserError, match="budgets"):
        wsd_cfg(schedule="cosine").validate()
    with pytest.raises(UserError, match="budgets"):
        wsd_cfg(budgets="1e3,abc").validate()


@pytest.mark.parametrize("short", [0, 32])  # 32: short rows on the trunk, long in the decays
def test_wsd_branches_are_hf_models_and_equal_a_separate_run(tmp_path, short):
    from rlscale.models import load_model

    res = pretrain(wsd_cfg(short_seq_len=short), tmp_path / "w")
    assert [b["tokens"] for b in res["branches"]] == [10 * ROWS, 20 * ROWS, 30 * ROWS]
    assert all(b["flops"] == 6 * res["N"] * b["tokens"] for b in res["branches"])
    for b in res["branches"]:
        model, tok = load_model(b["model_dir"])  # an ordinary HF directory
        assert model is not None and tok is not None
    assert not list((tmp_path / "w").glob("**/checkpoints"))
    assert _same(_weights(tmp_path / "w" / "model"),
                 _weights(tmp_path / "w" / "branches" / f"{30 * ROWS:09d}" / "model"))
    # the smallest budget's branch is exactly a separate wsd run of that budget
    alone = pretrain(wsd_cfg(tokens=10 * ROWS, budgets="", short_seq_len=short), tmp_path / "alone")
    assert _same(_weights(tmp_path / "w" / "branches" / f"{10 * ROWS:09d}" / "model"),
                 _weights(tmp_path / "alone" / "model"))
    assert alone["final_loss"] == pytest.approx(res["branches"][0]["final_loss"])


@pytest.mark.parametrize("die_at", [9, 26])  # inside the first branch, inside the last
def test_wsd_branches_resume_to_the_same_weights(tmp_path, monkeypatch, die_at):
    full = pretrain(wsd_cfg(), tmp_path / "full")
    real, calls = Corpus.batch, {"n": 0}

    def dies(self, step):  # the die_at-th batch drawn (trunk 0-7, branch 8-9, trunk 10-15, ...)
        calls["n"] += 1
        if calls["n"] == die_at:
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(Corpus, "batch", dies)
    with pytest.raises(KeyboardInterrupt):
        pretrain(wsd_cfg(), tmp_path / "cut")
    monkeypatch.setattr(Corpus, "batch", real)
    with pytest.raises(UserError, match="already holds"):
        pretrain(wsd_cfg(), tmp_path / "cut")
    res = pretrain(wsd_cfg(), tmp_path / "cut", resume=True)
    for a, b in zip(full["branches"], res["branches"]):
        assert _same(_weights(tmp_path / "full" / "branches" / f"{a['tokens']:09d}" / "model"),
                     _weights(tmp_path / "cut" / "branches" / f"{b['tokens']:09d}" / "model"))
    lines = (tmp_path / "cut" / "loss.jsonl").read_text().splitlines()
    steps = [json.loads(x)["step"] for x in lines]
    assert steps == sorted(set(steps))  # nothing logged twice


def test_wsd_survives_sigkill(tmp_path):
    """A killed process (no chance to save) resumes from its last periodic checkpoint."""
    out = tmp_path / "k"
    code = ("import sys; from tests.test_allocation import wsd_cfg; from rlscale.pretrain import "
            f"pretrain; pretrain(wsd_cfg(checkpoint_every=3), {str(out)!r}, resume=True)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=str(Path(__file__).parent.parent))

    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("branches/*/pretrain.json")):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    res = pretrain(wsd_cfg(checkpoint_every=3), out, resume=True)
    ref = pretrain(wsd_cfg(checkpoint_every=3), tmp_path / "ref")
    for a, b in zip(ref["branches"], res["branches"]):
        assert a["tokens"] == b["tokens"]
        assert _same(_weights(tmp_path / "ref" / "branches" / f"{a['tokens']:09d}" / "model"),
                     _weights(out / "branches" / f"{b['tokens']:09d}" / "model"))


# ---------------------------------------------------------------- the joint law
def _synthetic(form="rl_power", noise=0.02, seed=0):
    from rlscale.scaling.joint import predict

    p = dict(E=0.02, A=0.1, alpha=0.5, B=0.2, beta=0.6, T0=1e5, k=0.4, N_ref=6e4, D_ref=1.5e6)
    rng = np.random.default_rng(seed)
    rows = []
    for n in (2e4, 6e4, 2e5):
        for d in (7.5e5, 1.5e6, 3e6):
            for step in range(0, 31, 5):
                c = step * 15000 * 6 * n
                loss = float(predict(form, p, n, d, c)) * math.exp(rng.normal(0, noise))
                rows.append(dict(N=n, pretrain_tokens=d, rl_flops=c, test_loss=loss,
                                 test_loss_se=0.01, curve=f"{n}/{d}"))
    return p, rows


def test_joint_fit_recovers_a_known_law_and_its_frontier():
    from rlscale.scaling.frontier import frontier
    from rlscale.scaling.joint import JointData, JointFit, fit_joint

    p, rows = _synthetic(noise=0.005)
    fit = fit_joint(JointData.from_rows(rows), "rl_power", n_boot=20)
    assert fit.r2 > 0.99
    assert fit.params["k"] == pytest.approx(0.4, rel=0.1)
    assert fit.params["T0"] == pytest.approx(1e5, rel=0.3)
    assert fit.intervals["k"][0] <= fit.params["k"] <= fit.intervals["k"][1]
    sizes = (2e4, 6e4, 2e5)
    f = frontier(fit, 1e12, sizes=sizes)
    assert f["N"] in sizes
    assert f["N"] * f["pretrain_tokens"] * 6 + f["rl_flops"] == pytest.approx(1e12)
    assert 0 <= f["rl_share"] <= 1 and f["interval"][0] <= f["predicted_test_loss"] * 1.01
    # no other split of the same budget is better under the fit
    for n in sizes:
        for s in (0.0, 0.1, 0.5, 0.9):
            d = (1 - s) * 1e12 / (6 * n)
            assert fit.predict(n, d, s * 1e12) >= f["predicted_test_loss"] - 1e-9
    again = JointFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    assert frontier(again, 1e12, sizes=sizes)["predicted_test_loss"] == pytest.approx(
        f["predicted_test_loss"])


def test_frontier_with_capped_tokens_spends_the_rest_on_rl():
    from rlscale.scaling.frontier import frontier
    from rlscale.scaling.joint import JointFit

    p, _ = _synthetic()
    fit = JointFit("rl_power", p, 1.0, 0.0, 0, 0)
    sizes = (2e4, 6e4, 2e5)
    free = frontier(fit, 1e13, sizes=sizes)
    cap = free["pretrain_tokens"] / 4
    f = frontier(fit, 1e13, sizes=sizes, d_max=cap)
    assert f["pretrain_tokens"] <= cap * (1 + 1e-6)
    assert 6 * f["N"] * f["pretrain_tokens"] + f["rl_flops"] == pytest.approx(1e13)
    assert f["predicted_test_loss"] >= free["predicted_test_loss"] - 1e-12
    # the best of every capped split of the budget, on a fine grid of shares
    best = min(float(fit.predict(n, min(cap, (1 - s) * 1e13 / (6 * n)),
                                 1e13 - 6 * n * min(cap, (1 - s) * 1e13 / (6 * n))))
               for n in sizes for s in np.linspace(0, 0.999, 2000))
    assert f["predicted_test_loss"] == pytest.approx(best, rel=1e-3)
    # a cap above the free optimum changes nothing
    loose = frontier(fit, 1e13, sizes=sizes, d_max=free["pretrain_tokens"] * 2)
    assert loose["N"] == free["N"]
    for k in ("rl_share", "pretrain_tokens", "predicted_test_loss"):
        assert loose[k] == pytest.approx(free[k], rel=1e-6)


def test_held_out_scores_the_fit_on_unseen_points_and_as_a_chooser():
    from rlscale.allocation_points import held_out, options_at
    from rlscale.scaling.joint import JointFit

    p, rows = _synthetic(noise=0.0)
    for r in rows:
        r["C_total"] = 6 * r["N"] * r["pretrain_tokens"] + r["rl_flops"]
        r["step"] = round(r["rl_flops"] / (15000 * 6 * r["N"]))
        r["rl_share"], r["rung"] = r["rl_flops"] / r["C_total"], f"{r['N']:g}"
    budgets = sorted(r["C_total"] for r in rows)
    fit_b, val_b = budgets[len(budgets) // 2], budgets[-1]
    exact = held_out(JointFit("rl_power", p, 1.0, 0.0, 0, 0), rows, fit_b, val_b)
    unseen = [r for r in rows if r["C_total"] > fit_b * (1 + 1e-9)]
    assert exact["n_points"] == len(unseen) > 0
    assert exact["mare"] == pytest.approx(0, abs=1e-12) and exact["within_2se"] == 1.0
    assert exact["law_pick"]["curve"] == exact["measured_best"]["curve"] and exact["regret"] == 0
    # a law that thinks RL does nothing picks a pure pre-training option: its regret is the
    # measured gap to the best option at that budget
    flat = JointFit("rl_power", {**p, "k": 0.0, "B": 0.0}, 1.0, 0.0, 0, 0)
    h = held_out(flat, rows, fit_b, val_b)
    opts = options_at(rows, val_b)["options"]
    assert h["n_options"] == len(opts)
    assert h["regret"] == pytest.approx(h["law_pick"]["test_loss"]
                                        - min(o["test_loss"] for o in opts))
    assert h["regret"] > 0 and h["mare"] > 0.05
    # the points the data cannot tell from the best, recomputed by brute force
    from rlscale.allocation_report import sentence

    at = options_at(rows, val_b)
    best, t = at["best"], at["tied"]
    inside = [r for r in rows if r["C_total"] <= val_b * (1 + 1e-9)]
    tied = [r for r in inside if r["test_loss"] <= best["test_loss"] + 2 * math.hypot(
        r["test_loss_se"], best["test_loss_se"])]
    assert t["n_points"] == len(tied) >= 1 and t["of"] == len(inside)
    assert t["rl_share"] == [min(r["rl_share"] for r in tied), max(r["rl_share"] for r in tied)]
    assert t["rl_share"][0] <= best["rl_share"] <= t["rl_share"][1]
    assert f"{t['n_points']} of the {t['of']} measured points" in sentence(at)
    # with no noise only the best itself (and exact ties) is within 2 SE
    quiet = [{**r, "test_loss_se": 0.0} for r in rows]
    q = options_at(quiet, val_b)
    assert q["tied"]["n_points"] == sum(r["test_loss"] == q["best"]["test_loss"] for r in
                                        quiet if r["C_total"] <= val_b * (1 + 1e-9))


def test_held_out_splits_seen_and_unseen_checkpoints():
    """The held-out points split by whether the fit saw their checkpoint (session 27: the law's
    error grows most on checkpoints it never saw), each class scored against the law's own
    bootstrap interval; and frontier flags tokens past the most the fit saw at a size, even
    where they lie inside the fitted tokens of another size."""
    from rlscale.allocation_points import held_out, scored
    from rlscale.scaling.frontier import frontier
    from rlscale.scaling.joint import JointData, fit_joint, tokens_seen

    p, rows = _synthetic(noise=0.01)
    for r in rows:
        r["C_total"] = 6 * r["N"] * r["pretrain_tokens"] + r["rl_flops"]
        r["step"] = round(r["rl_flops"] / (15000 * 6 * r["N"]))
        r["rl_share"], r["rung"] = r["rl_flops"] / r["C_total"], f"{r['N']:g}"
    fit_b = 6 * 2e5 * 7.5e5 * 1.05  # 200k: only its smallest checkpoint, and its start
    fit_pts = [r for r in rows if r["C_total"] <= fit_b]
    fit = fit_joint(JointData.from_rows(fit_pts), "rl_power", n_boot=10)
    h = held_out(fit, rows, fit_b, max(r["C_total"] for r in rows))
    unseen = [r for r in rows if r["C_total"] > fit_b]
    saw = {(r["N"], r["pretrain_tokens"]) for r in fit_pts}
    by = h["by_checkpoint"]
    assert by["seen"]["n_points"] == sum((r["N"], r["pretrain_tokens"]) in saw for r in unseen) > 0
    assert by["seen"]["n_points"] + by["unseen"]["n_points"] == h["n_points"] == len(unseen)
    assert {(r["N"], r["pretrain_tokens"]) for r in unseen} - saw == {
        (6e4, 3e6), (2e5, 1.5e6), (2e5, 3e6)}
    # coverage recomputed point by point from the bootstrap draws
    cls = [r for r in unseen if (r["N"], r["pretrain_tokens"]) not in saw]
    inside = [lo <= r["test_loss"] <= hi for r in cls
              for lo, hi in [fit.interval(r["N"], r["pretrain_tokens"], r["rl_flops"])]]
    assert by["unseen"]["inside_interval"] == pytest.approx(sum(inside) / len(inside))
    assert scored(fit, []) == {"n_points": 0}
    # fit intervals: None without draws; frontier's is the same helper's
    assert fit.interval(2e5, 3e6, 0.0)[0] <= float(fit.predict(2e5, 3e6, 0.0)) * 1.05
    bare = type(fit)(fit.form, fit.params, 1.0, 0.0, 0, 0)
    assert bare.interval(2e5, 3e6, 0.0) == (None, None)
    # the most tokens seen per size; 200k on 1.5M tokens lies inside the fitted token range
    # (the 20k rung's 3M) but past what the fit saw at 200k
    assert tokens_seen(fit, 2e5) == 7.5e5 and tokens_seen(fit, 6e4) == 1.5e6
    assert tokens_seen(fit, 1e5) is None
    f = frontier(fit, 6 * 2e5 * 1.5e6 * 1.001, sizes=[2e5])
    assert "pretrain_tokens" not in f["extrapolated"]
    assert "pretrain_tokens_at_N" in f["extrapolated"]
    assert f["tokens_x_seen"] == pytest.approx(f["pretrain_tokens"] / 7.5e5) and f["tokens_x_seen"] > 1
    old = type(fit).from_dict({k: v for k, v in fit.to_dict().items() if k != "d_seen"})
    assert frontier(old, 6 * 2e5 * 1.5e6 * 1.001, sizes=[2e5])["tokens_x_seen"] is None
    # a plan within the seen checkpoints: every size at most at its seen tokens, RL the rest
    for b in (1e11, 1e12, 1e13):
        w = frontier(fit, b, within_seen=True)
        assert w["N"] in (2e4, 6e4, 2e5) and w["pretrain_tokens"] <= tokens_seen(fit, w["N"]) * 1.0001
        assert 6 * w["N"] * w["pretrain_tokens"] + w["rl_flops"] == pytest.approx(b)
        assert "pretrain_tokens_at_N" not in w["extrapolated"]
    assert frontier(fit, 1e13, within_seen=True, sizes=[2e5])["pretrain_tokens"] == \
        pytest.approx(7.5e5, rel=1e-4)
    with pytest.raises(UserError, match="--within-seen: this fit records no tokens"):
        frontier(old, 1e12, within_seen=True)
    with pytest.raises(UserError, match="none of the sizes"):
        frontier(fit, 1e12, within_seen=True, sizes=[1e5])


def test_token_error_widens_the_interval_past_the_seen_checkpoints():
    """The law's measured error per decade of tokens (each size's largest checkpoint left out,
    refitted, predicted; session 28: the bootstrap alone covered 63% of the points on unseen
    checkpoints at nominal 90%) widens the interval past a size's seen tokens, nowhere else."""
    from rlscale.scaling.joint import JointData, JointFit, fit_joint, tokens_seen

    _, rows = _synthetic(noise=0.02, seed=1)
    fit = fit_joint(JointData.from_rows(rows), "rl_power", n_boot=10)
    # recomputed by brute force: each size's 3M checkpoint left out, the rest refitted
    scaled = []
    for n in (2e4, 6e4, 2e5):
        out = [r for r in rows if r["N"] == n and r["pretrain_tokens"] == 3e6]
        rest = fit_joint(JointData.from_rows([r for r in rows if r not in out]), "rl_power", 0)
        scaled += [abs(math.log(float(rest.predict(r["N"], 3e6, r["rl_flops"])) / r["test_loss"]))
                   / math.log10(2) for r in out]
    assert fit.token_error["checkpoints"] == 3
    assert fit.token_error["per_decade"] == pytest.approx(np.quantile(scaled, 0.9), rel=0.05)
    boot = JointFit(**{**fit.__dict__, "token_error": None})
    for n, d in ((2e5, 3e6), (2e5, 1.5e6), (1e5, 1e7)):  # seen, inside, a size never seen
        assert fit.interval(n, d, 1e12) == boot.interval(n, d, 1e12)
    widths, wider = [], []
    for x in (1.5, 3, 10):  # past the seen 3M: at least the measured error for that distance
        d, c = 3e6 * x, 6 * 2e5 * 15000 * 10
        lo, hi = fit.interval(2e5, d, c)
        half, p = fit.token_error["per_decade"] * math.log10(x), float(fit.predict(2e5, d, c))
        b_lo, b_hi = boot.interval(2e5, d, c)
        assert lo == pytest.approx(min(b_lo, p * math.exp(-half)))
        assert hi == pytest.approx(max(b_hi, p * math.exp(half)))
        widths.append(math.log(hi / lo))
        wider.append(math.log(hi / lo) > math.log(b_hi / b_lo) + 1e-9)
    assert widths == sorted(widths) and wider[0]  # near the checkpoint the measured term rules
    assert tokens_seen(fit, 2e5) == 3e6
    again = JointFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    assert again.token_error == fit.token_error
    old = JointFit.from_dict({k: v for k, v in fit.to_dict().items() if k != "token_error"})
    assert old.interval(2e5, 3e7, 0.0) == boot.interval(2e5, 3e7, 0.0)
    # one checkpoint per size: nothing to measure the distance on
    single = [r for r in rows if r["pretrain_tokens"] == 1.5e6]
    assert fit_joint(JointData.from_rows(single), "rl_power", n_boot=3).token_error is None


def test_joint_flags_parameters_the_data_do_not_pin_down():
    from rlscale.scaling.joint import _bounds, _flags, specs

    lo, hi = _bounds("rl_kn")
    z = (lo + hi) / 2
    z[[s[0] for s in specs("rl_kn")].index("K_max")] = hi[6]  # K_max at its upper bound
    iv = {"N0": [1e4, 5e6], "T0": [1e4, 5e4]}
    assert _flags("rl_kn", z, iv) == {"K_max": "at a bound",
                                      "N0": "interval spans more than a decade"}
    # the interval rules are intervals.interval_flags' (one home): an interval reaching its
    # bound, and a positive parameter's spanning a decade, log-scaled in the search or not
    iv = {"T0": [1e2, 5e3], "alpha": [0.02, 0.9], "E": [0.1, 0.2]}
    assert _flags("rl_kn", z, iv) == {"K_max": "at a bound",
                                      "T0": "interval reaches its bound",
                                      "alpha": "interval spans more than a decade"}


def test_joint_form_choice_and_bad_data():
    from rlscale.scaling.joint import JointData, choose_form

    _, rows = _synthetic(form="rl_power", noise=0.01)
    form, scores = choose_form(JointData.from_rows(rows), forms=("rl_power", "rl_floor"))
    assert set(scores) == {"rl_power", "rl_floor"} and form in scores
    with pytest.raises(UserError, match="test_loss"):
        JointData.from_rows([dict(rows[0], test_loss=1.5)] + rows[1:])
    with pytest.raises(UserError, match="at least 8"):
        JointData.from_rows(rows[:3])


def test_rl_edge_recovers_a_competence_threshold_and_wins_the_form_choice():
    """Data where RL lifts only models past a competence threshold (the micro ladder's
    pattern): rl_edge finds the threshold a_c and beats the power law out of sample."""
    from rlscale.scaling.joint import JointData, choose_form, fit_joint, predict

    p = dict(E=0.05, A=0.25, alpha=0.6, B=0.25, beta=0.8, T0=1e5, k=0.5, a_c=0.3, gamma=4.0,
             phi_max=0.9, N_ref=6e4, D_ref=1.5e6)
    rng = np.random.default_rng(0)
    rows = [dict(N=n, pretrain_tokens=d, rl_flops=s * 15000 * 6 * n, curve=f"{n}/{d}",
                 test_loss=float(predict("rl_edge", p, n, d, s * 15000 * 6 * n))
                 * math.exp(rng.normal(0, 0.01)), test_loss_se=0.01)
            for n in (2e4, 6e4, 2e5) for d in (7.5e5, 1.5e6, 3e6) for s in range(0, 31, 5)]
    # below the threshold RL gains nothing; above it, a lot
    def gain(n, d):
        return predict("rl_edge", p, n, d, 0) - predict("rl_edge", p, n, d, 30 * 9e4 * n)

    assert gain(2e4, 7.5e5) < 0.001 < 0.1 < gain(6e4, 1.5e6)
    data = JointData.from_rows(rows)
    fit = fit_joint(data, "rl_edge", n_boot=10)
    assert fit.r2 > 0.99
    assert fit.params["a_c"] == pytest.approx(0.3, rel=0.1)
    assert fit.intervals["a_c"][0] <= fit.params["a_c"] <= fit.intervals["a_c"][1]
    assert "a_c" not in fit.flags and "gamma" not in fit.flags
    form, scores = choose_form(data, forms=("rl_power", "rl_edge"))
    assert form == "rl_edge" and scores["rl_edge"] < 0.1 * scores["rl_power"]


# ---------------------------------------------------------------- the study and plan
def test_cosine_allocation_plans_one_run_per_budget(tmp_path):
    """schedule cosine: every budget its own cosine run (the study's schedule), the same RL
    runs and tags as the wsd plan's branches."""
    import dataclasses

    from rlscale.allocation import PRESETS, plan_jobs

    cos = PRESETS["allocate-words"]
    assert cos.schedule == "cosine"
    wsd = dataclasses.replace(cos, schedule="wsd")
    a, b = plan_jobs(wsd, tmp_path), plan_jobs(cos, tmp_path)
    rl_a = {j.name: j for j in a if j.kind == "rl"}
    rl_b = {j.name: j for j in b if j.kind == "rl"}
    assert rl_a.keys() == rl_b.keys() and len(rl_b) == 3 * len(wsd.token_fracs)
    pre = {j.name: j for j in b if j.kind == "pretrain"}
    assert len(pre) == len(rl_b)
    for j in rl_b.values():
        (dep,) = j.deps
        cfg = pre[dep].params
        assert cfg["schedule"] == "cosine" and cfg["budgets"] == ""
        assert j.params["model"] == str(Path(pre[dep].out) / "model")
        # the cosine run's tokens are the branch's, to the step
        assert j.name.endswith(f"{cfg['tokens'] // (8 * 512) * 8 * 512:09d}")
        assert {k: v for k, v in j.params.items() if k != "model"} == {
            k: v for k, v in rl_a[j.name].params.items() if k != "model"}


@pytest.mark.parametrize("schedule", ["wsd", "cosine"])
def test_rl_steps_by_budget_follow_the_checkpoints_budget(tmp_path, schedule):
    import dataclasses

    from rlscale.allocation import PRESETS, AllocPreset, plan_jobs

    p = dataclasses.replace(PRESETS["allocate-words-long"], schedule=schedule)
    assert p.rl_steps_by_budget == (120, 120, 480, 480)
    rl = [j for j in plan_jobs(p, tmp_path) if j.kind == "rl"]
    by_rung = {}
    for j in rl:
        by_rung.setdefault(j.meta["rung"], []).append(j)
    assert len(by_rung) == 3
    for jobs in by_rung.values():  # ascending budgets: the two largest run 480 steps
        jobs.sort(key=lambda j: j.name)
        assert [j.params["steps"] for j in jobs] == [120, 120, 480, 480]
        assert [j.total for j in jobs] == [120, 120, 480, 480]
    base = {j.name: j.params for j in plan_jobs(PRESETS["allocate-words"], tmp_path)
            if j.kind == "rl"}
    assert base.keys() == {j.name for j in rl} and all(
        base[j.name]["steps"] == 120 for j in rl)
    with pytest.raises(ValueError, match="one entry per token_frac"):
        AllocPreset("x", "cpu-words", rl_steps_by_budget=(1, 2))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from rlscale.allocation import PRESETS, allocate

    out = tmp_path_factory.mktemp("alloc")
    return out, allocate(PRESETS["allocate-smoke"], out, workers=2, progress=False)


def test_allocation_outputs_and_schema(smoke):
    out, res = smoke
    for name in ("allocation.json", "allocation_fit.json", "allocation.md",
                 "allocation_frontier.png", "allocation_share.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "allocation.json").read_text())
    assert [b["C_total"] for b in saved["budgets"]] == sorted(b["C_total"] for b in saved["budgets"])
    for b in saved["budgets"]:
        assert b["options"] and 0 <= b["best"]["rl_share"] <= 1
        assert b["best"]["test_loss"] == min(o["test_loss"] for o in b["options"])
    law = saved["law"]
    assert law["name"].startswith("joint_") and law["params"] and law["intervals"]
    assert set(law["flags"]) <= set(law["params"])
    assert math.isfinite(law["r2"])
    # the law's measured error past a size's last checkpoint, stated in the report
    te = law["token_error"]
    assert te["checkpoints"] >= 1 and te["per_decade"] >= 0
    assert f"a factor {math.exp(te['per_decade']):.3g} per decade" in (out / "allocation.md").read_text()
    v = saved["validation"]
    assert {"predicted", "measured", "se", "within_2se"} <= set(v)
    assert v["within_2se"] == (abs(v["measured"] - v["predicted_at_realised"]) <= 2 * v["se"])
    h = saved["held_out"]
    assert h["n_points"] >= 1 and 0 <= h["within_2se"] <= 1 and h["regret"] >= 0
    assert "did not see" in (out / "allocation.md").read_text()
    assert saved["seed"] == 0 and "`rlscale replicates DIR DIR`" in (out / "allocation.md").read_text()
    assert len((out / "allocation.md").read_text().splitlines()) > len(saved["budgets"])


def test_allocation_numbers_recompute_from_metrics(smoke):
    out, res = smoke
    saved = json.loads((out / "allocation.json").read_text())
    for b in saved["budgets"]:
        for o in b["options"]:
            run = out / "runs" / o["curve"]
            rows = {r["step"]: r for r in map(json.loads,
                                              (run / "metrics.jsonl").read_text().splitlines())}
            cfg = json.loads((run / "config.json").read_text())
            pre = json.loads((Path(cfg["model"]).parent / "pretrain.json").read_text())
            row = rows[o["step"]]
            assert o["test_loss"] == row["test_loss"] and o["rl_flops"] == row["C_paper"]
            assert o["pretrain_tokens"] == pre["tokens"] and o["N"] == pre["N"]
            assert o["C_total"] == pytest.approx(6 * pre["N"] * pre["tokens"] + row["C_paper"])
            assert o["C_total"] <= b["C_total"] * (1 + 1e-9)
    assert len(saved["checkpoints"]) == len(list(out.glob("runs/*/metrics.jsonl")))
    for c in saved["checkpoints"]:
        rows = [r for r in map(json.loads, (out / "runs" / c["curve"] / "metrics.jsonl")
                               .read_text().splitlines()) if r.get("test_loss") is not None]
        assert c["before"] == 1 - rows[0]["test_loss"] and c["after"] == 1 - rows[-1]["test_loss"]
        se = math.hypot(rows[0].get("test_loss_se") or 0.0, rows[-1].get("test_loss_se") or 0.0)
        if se > 0:
            assert c["gain_se"] == pytest.approx((c["after"] - c["before"]) / se)
        else:  # a checkpoint that answers nothing, before and after: no SE to divide by
            assert c["gain_se"] is None
    v = saved["validation"]  # allocate-smoke measures its validation allocation twice
    runs = [out / "validation" / "rl", out / "validation" / "d1" / "rl"]
    last = [json.loads((r / "metrics.jsonl").read_text().splitlines()[-1]) for r in runs]
    loss = [r["test_loss"] for r in last]
    assert [d["measured"] for d in v["draws"]] == loss and v["n_draws"] == 2
    assert v["measured"] == pytest.approx(sum(loss) / 2)
    assert v["draw_sd"] == pytest.approx(abs(loss[0] - loss[1]) / math.sqrt(2))
    eval_se = math.hypot(*(r["test_loss_se"] for r in last)) / 2
    assert v["eval_se"] == pytest.approx(eval_se)
    assert v["se"] == pytest.approx(max(v["draw_sd"] / math.sqrt(2), eval_se))
    assert v["error"] == pytest.approx(v["measured"] - v["predicted_at_realised"])
    top, vs = saved["budgets"][-1], v["vs_measured_best"]  # following the law vs the grid
    assert top["C_total"] == v["budget"] and vs["curve"] == top["best"]["curve"]
    assert vs["difference"] == pytest.approx(v["measured"] - top["best"]["test_loss"])
    assert vs["se"] == pytest.approx(math.hypot(v["se"], top["best"]["test_loss_se"]))
    assert vs["budget_share_spent"] == pytest.approx(v["realised"]["C_total"] / top["C_total"])


def test_validation_draws_differ_and_extend_a_finished_run(smoke, tmp_path):
    """Each draw has its own pre-training and RL seeds; the verdict's two parts follow from
    the numbers shown; a run with fewer draws reruns with more, keeping its jobs and its plan
    (in a copy of the study: its recorded paths follow it)."""
    import dataclasses
    import shutil

    from rlscale.allocation import PRESETS, allocate

    out, res = smoke
    v = res["validation"]
    seeds = [json.loads((out / sub / "pretrain" / "pretrain.json").read_text())["config"]["seed"]
             for sub in ("validation", "validation/d1")]
    assert seeds == [0, 1000] and [d["seed"] for d in v["draws"]] == [0, 1000]
    rl = json.loads((out / "validation" / "d1" / "rl" / "config.json").read_text())
    assert rl["seed"] == 1000 and rl["model"].endswith("validation/d1/pretrain/model")
    lo, hi = v["interval_at_realised"]
    assert lo <= hi and v["inside_interval"] == (lo <= v["measured"] <= hi)
    assert v["within_2se"] == (abs(v["error"]) <= 2 * v["se"])
    text = (out / "allocation.md").read_text()
    assert "2 draws of it" in text and "interval there" in text
    vs = v["vs_measured_best"]
    assert (f"allocation measured {'lower' if vs['difference'] < 0 else 'higher'} loss by "
            f"{abs(vs['difference']):.3f}") in text
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "validation" / "d1")
    plan = (copy / "allocation_validation_plan.json").read_text()
    one = allocate(dataclasses.replace(PRESETS["allocate-smoke"], val_draws=1), copy, workers=2,
                   progress=False)["validation"]
    assert one["n_draws"] == 1 and one["measured"] == v["draws"][0]["measured"]
    assert one["se"] == v["draws"][0]["se"] and one["draw_sd"] is None
    before = {q: q.stat().st_mtime for q in copy.glob("runs/*/metrics.jsonl")}
    two = allocate(PRESETS["allocate-smoke"], copy, workers=2, progress=False)["validation"]
    assert two["n_draws"] == 2 and two["draws"][0] == one["draws"][0]
    assert (copy / "allocation_validation_plan.json").read_text() == plan
    assert {q: q.stat().st_mtime for q in copy.glob("runs/*/metrics.jsonl")} == before
    # the copy's recorded paths followed it (rlscale.study_move): none names the original
    for f in copy.rglob("*.json"):
        assert str(out) not in f.read_text(), f
    assert json.loads((copy / "allocation_settings.json").read_text())["root"] == str(copy)


def test_allocation_rerun_skips_finished_work(smoke):
    import time

    from rlscale.allocation import PRESETS, allocate

    out, res = smoke
    before = {p: p.stat().st_mtime for p in out.glob("runs/*/metrics.jsonl")}
    t0 = time.perf_counter()
    again = allocate(PRESETS["allocate-smoke"], out, workers=2, progress=False)
    assert {p: p.stat().st_mtime for p in out.glob("runs/*/metrics.jsonl")} == before
    assert again["validation"]["measured"] == res["validation"]["measured"]
    assert time.perf_counter() - t0 < 60


def test_allocation_settings_saved_before_a_new_field_resume(smoke):
    """A directory whose settings predate a preset field (schedule, seed, val_tokens_x) resumes
    when the preset keeps that field's default; another seed is refused in one line."""
    import dataclasses

    from rlscale.allocation import PRESETS, allocate

    out, res = smoke
    path = out / "allocation_settings.json"
    saved = json.loads(path.read_text())
    for k in ("schedule", "seed", "val_tokens_x"):
        saved["preset"].pop(k)
    path.write_text(json.dumps(saved))
    again = allocate(PRESETS["allocate-smoke"], out, workers=2, progress=False)
    assert again["validation"]["measured"] == res["validation"]["measured"]
    with pytest.raises(UserError, match="allocation_settings.json"):
        allocate(dataclasses.replace(PRESETS["allocate-smoke"], seed=1), out, workers=2,
                 progress=False)


PLAN = re.compile(r"^plan: budget=\S+ N=\d+ pretrain_tokens=\d+ rl_flops=\S+ rl_share=[\d.]+ "
                  r"predicted_test_loss=[\d.]+ interval=\S+,\S+$")


def test_plan_prints_one_line_and_writes_the_plot(smoke, tmp_path, capsys):
    from rlscale.cli import main

    out, res = smoke
    budget = res["budgets"][-1]["C_total"]
    assert main(["plan", "--fit", str(out / "allocation_fit.json"), "--budget", f"{budget:.4g}",
                 "--plot", str(tmp_path / "f.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and PLAN.match(lines[0]), lines
    assert (tmp_path / "f.png").stat().st_size > 0
    # within the seen checkpoints: the tokens at most those the fit saw at the chosen size
    assert main(["plan", "--fit", str(out / "allocation_fit.json"), "--budget", f"{budget:.4g}",
                 "--plot", str(tmp_path / "g.png"), "--within-seen"]) == 0
    line = capsys.readouterr().out.strip()
    assert PLAN.match(line), line
    n, d = (float(re.search(rf" {k}=(\S+)", line).group(1)) for k in ("N", "pretrain_tokens"))
    seen = dict(json.loads((out / "allocation_fit.json").read_text())["d_seen"])
    assert d <= min(v for m, v in seen.items() if abs(m - n) <= 1) * 1.0001
    # a fit written before it kept its tokens per size: one line, exit 2
    old = tmp_path / "old.json"
    old.write_text(json.dumps({k: v for k, v in json.loads(
        (out / "allocation_fit.json").read_text()).items() if k != "d_seen"}))
    assert main(["plan", "--fit", str(old), "--budget", "1e12", "--within-seen"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--within-seen" in err[0]


@pytest.mark.parametrize("budget", ["-1", "0", "abc", "nan", "inf"])
def test_plan_bad_budget_exits_2(smoke, budget, capsys):
    from rlscale.cli import main

    out, _ = smoke
    assert main(["plan", "--fit", str(out / "allocation_fit.json"), "--budget", budget]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budget" in err[0]


def test_plan_bad_fit_exits_2(smoke, tmp_path, capsys):
    from rlscale.cli import main

    out, _ = smoke
    bad = tmp_path / "bad.json"
    fit = json.loads((out / "allocation_fit.json").read_text())
    for content in ("{not json", "[1, 2]", json.dumps({"form": "rl_power", "params": {"E": 1}}),
                    (out / "allocation.json").read_text(),
                    json.dumps({**fit, "token_error": {"per_decade": "wide"}}),
                    json.dumps({**fit, "token_error": {"per_decade": -1}}),
                    json.dumps({**fit, "token_error": 3})):
        bad.write_text(content)
        assert main(["plan", "--fit", str(bad), "--budget", "1e12"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["plan", "--fit", str(tmp_path / "missing.json"), "--budget", "1e12"]) == 2


def test_plan_fits_a_users_own_runs(tmp_path, capsys):
    from rlscale.cli import main

    _, rows = _synthetic()
    csv = tmp_path / "runs.csv"
    keys = ("N", "pretrain_tokens", "rl_flops", "test_loss", "test_loss_se", "curve")
    csv.write_text(",".join(keys) + "\n" + "".join(
        ",".join(str(r[k]) for k in keys) + "\n" for r in rows))
    fit = tmp_path / "fit.json"
    assert main(["plan", "--points", str(csv), "--fit", str(fit), "--budget", "1e12",
                 "--bootstrap", "10"]) == 0
    assert PLAN.match(capsys.readouterr().out.strip())
    assert json.loads(fit.read_text())["form"] in FORMS
    csv.write_text("N,pretrain_tokens,rl_flops,test_loss\n1e5,x,0,0.5\n")
    assert main(["plan", "--points", str(csv), "--fit", str(fit), "--budget", "1e12"]) == 2


def test_replicates_table_allocation_seeds(smoke, tmp_path, capsys):
    """`rlscale replicates` over allocation directories: the smoke experiment and a copy of it
    as another seed, whose best option at the largest budget moved and one of whose checkpoints
    has a long RL curve (written here: steps 0, 40, 120, 480)."""
    import shutil

    from rlscale.cli import main

    out, res = smoke
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(out, a)
    shutil.copytree(out, b)
    # b's seed from its allocation.json; a's from its settings, as for a result written before
    # allocation.json held its seed (then the base preset's seed: the smoke's 0)
    older = json.loads((a / "allocation.json").read_text())
    del older["seed"]
    (a / "allocation.json").write_text(json.dumps(older))
    alloc = json.loads((b / "allocation.json").read_text())
    alloc["seed"] = 7
    alloc["budgets"][-1]["best"]["curve"] = "other-000000001"
    for budget in alloc["budgets"]:  # the grid is anchored at the largest C measured: a few
        budget["C_total"] *= 1.02    # percent apart between seeds, matched by position
    long = alloc["checkpoints"][0]
    long["steps"] = 480
    (b / "allocation.json").write_text(json.dumps(alloc))
    curve = b / "runs" / long["curve"] / "metrics.jsonl"
    curve.write_text("".join(json.dumps({"step": s, "test_loss": y, "test_loss_se": 0.01}) + "\n"
                             for s, y in ((0, 0.8), (40, 0.6), (120, 0.55), (480, 0.5))))
    md = tmp_path / "rep.md"
    assert main(["replicates", str(b), str(a), "--out", str(md)]) == 0
    text = capsys.readouterr().out
    assert text == md.read_text() + "\n" and "| seed 0 | seed 7 |" in text
    c = res["budgets"][-1]["C_total"]
    rows = [x for x in text.splitlines() if x.startswith(f"| {c:.3g}-{c * 1.02:.3g} |")]
    assert rows[0].endswith("| no |")  # the best option is another checkpoint in seed 7
    # 0.8 -> 0.5: the first 40 steps bring 0.2 of 0.3; steps 120-480 add 0.05 = 3.5 SE
    assert "first 40 steps 66.7% of it; steps 120-480 +0.050 (+3.5 SE)" in text
    v = res["validation"]  # the law's row: the draws, the verdict's two parts
    yes = {True: "yes", False: "no"}
    draws = " / ".join(format(d["measured"], ".3f") for d in v["draws"])
    vs = v["vs_measured_best"]
    z = "-" if vs["z"] is None else f"{vs['z']:+.1f}"
    assert (f"| {draws} | {v['error']:+.3f} ({v['se']:.3f}), {yes[v['within_2se']]} | "
            f"{yes[v['inside_interval']]} | {vs['difference']:+.3f} ({z}) | ") in text
    t = json.loads(md.with_suffix(".json").read_text())
    assert t["kind"] == "allocation" and t["seeds"] == [0, 7]
    assert len(t["budgets"]) == len(res["budgets"]) and t["law"][0]["form"] == res["law"]["form"]
    # bad input: one line, exit 2
    study = tmp_path / "study"
    study.mkdir()
    (study / "summary.json").write_text("{}")
    alloc["budgets"][0]["C_total"] *= 2
    (b / "allocation.json").write_text(json.dumps(alloc))
    for dirs, word in (([a, study], "mixed"), ([a, b], "budgets differ"),
                       ([a, a], "same seed")):
        assert main(["replicates", *map(str, dirs)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0], err
    good = (a / "allocation.json").read_text()
    for bad, word in (("{not json", "allocation.json"), ("[1]", "budgets"),
                      ('{"budgets": [{}]}', "budgets[0]: no field 'C_total'"),
                      ('{"budgets": [{"C_total": "x"}]}', "budgets[0].C_total"),
                      ('{"budgets": [{"C_total": 1, "best": {"curve": "c"}}]}', "budgets[0].best"),
                      ('{"budgets": [{"C_total": 1, "tied": {"rl_share": 0.1}}]}',
                       "budgets[0].tied.rl_share"),
                      ('{"budgets": [], "checkpoints": [{"curve": "c"}]}', "checkpoints[0]"),
                      ('{"budgets": [], "validation": [1]}', "validation: expected an object"),
                      ('{"budgets": [], "validation": {"se": "x"}}', "validation.se"),
                      ('{"budgets": [], "validation": {"inside_interval": 1}}',
                       "validation.inside_interval"),
                      ('{"budgets": [], "validation": {"draws": 5}}', "validation.draws"),
                      ('{"budgets": [], "validation": {"vs_measured_best": {"z": "x"}}}',
                       "validation.vs_measured_best"),
                      ('{"budgets": [], "validation": {"draws": [{"measured": null}]}}',
                       "validation.draws")):
        (a / "allocation.json").write_text(bad)
        assert main(["replicates", str(a), str(b)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0] and str(a) in err[0], err
    (a / "allocation.json").write_text(good)


def test_the_seen_preset_caps_the_validation_at_the_grids_tokens():
    """allocate-words-seen is allocate-words-long with the validation's pre-training at most
    the grid's largest token budget (the long preset allows 2x it)."""
    import dataclasses

    from rlscale.allocation import PRESETS
    from rlscale.allocation_validation import token_cap

    seen, long = PRESETS["allocate-words-seen"], PRESETS["allocate-words-long"]
    assert dataclasses.replace(seen, name=long.name, val_tokens_x=long.val_tokens_x) == long
    points = [{"pretrain_tokens": t} for t in (1e6, 4.64e6, 1e7)]
    assert token_cap(seen, points) == 1e7 and token_cap(long, points) == 2e7
    assert token_cap(PRESETS["allocate"], points) is None  # no cap
