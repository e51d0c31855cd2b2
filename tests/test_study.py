"""The embedded study: the plan of the presets, and the smoke preset end to end (every output
file exists and agrees with the runs' own files; a rerun redoes nothing)."""

import json
import re
from pathlib import Path

import pytest

from rlscale.errors import UserError
from rlscale.study import PRESETS, plan, study


def _n(rung: str) -> int:
    from rlscale.models import LADDER, rung_name

    r = LADDER[rung_name(rung)]
    return r.layers * (4 * r.hidden**2 + 3 * r.hidden * r.intermediate)


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_presets_span_the_ladder_and_hold_both_arms(name, tmp_path):
    preset = PRESETS[name]
    sizes = [_n(r.name) for r in preset.rungs]
    assert len(sizes) >= 4 and max(sizes) / min(sizes) >= 20
    jobs = {j.name: j for j in plan(preset, tmp_path)}
    arm = [j for j in jobs.values() if j.kind == "rl" and j.meta["rung"] == preset.arm_rung]
    taus = sorted(j.meta["tau"] for j in arm if j.meta["reward"] == "custom_flexible")
    assert taus == [1, 4, 16]
    # the data-reuse arm compares equal total prompts: same steps x batch, fewer unique prompts
    totals = {j.params["steps"] * j.params["batch_size"] for j in arm}
    assert len(totals) == 1
    assert {j.meta["reward"] for j in arm} == {"custom_flexible", "strict"}
    for j in jobs.values():
        assert set(j.deps) <= set(jobs)
        if j.kind == "rl":
            assert j.params["eval_temperature"] == 0.7 and j.params["temperature"] == 1.0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "smoke"
    summary = study(PRESETS["smoke"], out, progress=False)
    return out, summary


def _metrics(run_dir) -> list[dict]:
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_smoke_outputs_exist_and_are_linked(smoke):
    out, summary = smoke
    report = (out / "report.md").read_text()
    for name in ("loss_vs_compute", "k_vs_n", "accuracy_vs_total_compute", "data_reuse",
                 "reward_functions"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert f"]({name}.png)" in report
    for link in re.findall(r"\]\(([^)]+)\)", report):
        assert (out / link).is_file()
    assert (out / "results.sqlite").is_file()
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for key in ("loglinear_kn_C", "loglinear_kn_D", "gain_power"):
        fit = summary["fits"][key]
        assert ("r2" in fit) != ("error" in fit)  # a fit, or the reason there is none
        if "r2" in fit and key != "gain_power":
            assert {"K_max", "N0"} <= set(fit)


def test_smoke_summary_agrees_with_the_runs(smoke):
    out, summary = smoke
    preset = PRESETS["smoke"]
    assert [r["rung"] for r in summary["rungs"]] == [r.name for r in preset.rungs]
    for r in summary["rungs"]:
        tag = r["rung"].removeprefix("micro:")
        pre = json.loads((out / "pretrain" / tag / "pretrain.json").read_text())
        rows = _metrics(out / "runs" / tag)
        evals = [x for x in rows if x.get("test_loss") is not None]
        cfg = json.loads((out / "runs" / tag / "config.json").read_text())
        assert r["N"] == pre["N"] == cfg["N"]
        assert r["pretrain_tokens"] == pre["tokens"]
        assert r["pretrain_flops"] == pytest.approx(6 * r["N"] * r["pretrain_tokens"])
        assert evals[0]["step"] == 0 and evals[-1]["step"] == rows[-1]["step"]
        assert r["baseline_acc"] == pytest.approx(1 - evals[0]["test_loss"])
        assert r["final_acc"] == pytest.approx(1 - evals[-1]["test_loss"])
        assert r["final_se"] == pytest.approx(evals[-1]["test_loss_se"])
        assert r["rl_flops"] == pytest.approx(rows[-1]["C_paper"]) and r["rl_flops"] > 0
        assert r["rl_steps"] == preset.rungs[0].rl_steps
        assert set(r["kshot_greedy"]) == {str(k) for k in range(6)}
    reuse = summary["arms"]["reuse"]
    assert [a["tau"] for a in reuse] == [1, 4, 16]
    assert [a["unique_prompts"] for a in reuse] == sorted((a["unique_prompts"] for a in reuse),
                                                          reverse=True)
    assert {a["reward"] for a in summary["arms"]["reward"]} == {"custom_flexible", "strict"}
    strict = next(a for a in summary["arms"]["reward"] if a["reward"] == "strict")
    last = [x for x in _metrics(strict["run_dir"]) if x.get("test_loss") is not None][-1]
    assert strict["final_test_loss"] == pytest.approx(last["test_loss"])


def test_rerun_skips_finished_work_and_other_settings_are_refused(smoke):
    out, summary = smoke
    before = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.jsonl")}
    again = study(PRESETS["smoke"], out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.jsonl")} == before
    assert again["rungs"] == summary["rungs"]
    import dataclasses

    other = dataclasses.replace(PRESETS["smoke"], slip_frac=0.1)
    with pytest.raises(UserError, match="other settings"):
        study(other, out, progress=False)


def test_cli_rejects_bad_flags(tmp_path):
    from rlscale.cli import main

    with pytest.raises(SystemExit) as e:
        main(["study", "--preset", "huge", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert main(["study", "--workers", "0", "--out", str(tmp_path / "w")]) == 2
