"""Evaluation: pass@k, summaries recomputable from the JSONL, resume, CLI errors, held-out loss."""

import json
import os
import random
import time
from fractions import Fraction
from math import comb

import pytest

import rlscale.evaluate as ev
from rlscale.cli import main
from rlscale.eval_metrics import pass_at_k, summarize
from rlscale.evaluate import EvalConfig, evaluate, heldout_test_loss
from rlscale.files import read_jsonl
from rlscale.tasks import load_task


# ------------------------------------------------ pass@k
def test_pass_at_k_matches_exact_binomials():
    rng = random.Random(0)
    for _ in range(3000):
        n = rng.randint(1, 200)
        c, k = rng.randint(0, n), rng.randint(1, n)
        exact = 1 - Fraction(comb(n - c, k), comb(n, k))
        assert abs(pass_at_k(n, c, k) - float(exact)) < 1e-12, (n, c, k)


def test_pass_at_k_edges():
    assert pass_at_k(10, 0, 3) == 0.0 and pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(5, 3, 3) == 1.0  # fewer than k wrong samples: always a hit
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    for bad in [(3, 4, 1), (3, 1, 4), (3, 1, 0)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_problem_pass_at_k_averages_to_the_summarys():
    from rlscale.eval_metrics import problem_pass_at_k, summarize

    rng = random.Random(1)
    recs = [{"shots": s, "index": i, "completions": ["x"] * 8, "clipped": [False] * 8,
             "scores": {"custom_flexible": [float(rng.random() < i / 20) for _ in range(8)]}}
            for s in (0, 2) for i in range(20)]
    stats = summarize(recs)["results"]["0"]["checks"]["custom_flexible"]
    for k in (1, 2, 8):
        per = problem_pass_at_k(recs, "custom_flexible", k)
        assert sorted(per) == list(range(20))
        assert sum(per.values()) / 20 == pytest.approx(stats["pass_at_k"][str(k)])
    assert problem_pass_at_k(recs, "custom_flexible", 9) == {}  # more than the samples
    assert len(problem_pass_at_k(recs, "custom_flexible", 1, shots=2)) == 20


# ------------------------------------------------ summarize
def test_summarize_known_values():
    recs = [
        {"shots": 0, "index": 0, "completions": ["a", "b"], "clipped": [True, False],
         "scores": {"strict": [1.0, 0.0], "flexible": [1.0, 1.0]}},
        {"shots": 0, "index": 1, "completions": ["c", "d"], "clipped": [False, False],
         "scores": {"strict": [0.0, 0.0], "flexible": [1.0, 0.0]}},
        {"shots": 2, "index": 0, "completions": ["e", "f"], "clipped": [False, False],
         "scores": {"strict": [1.0, 1.0], "flexible": [1.0, 1.0]}},
    ]
    s = summarize(recs)
    r0 = s["results"]["0"]
    assert r0["n_problems"] == 2 and r0["n_samples"] == 2 and r0["clipped_share"] == 0.25
    assert r0["checks"]["strict"]["accuracy"] == 0.25
    assert r0["checks"]["strict"]["test_loss"] == 0.75
    assert r0["checks"]["strict"]["pass_at_k"] == {"1": 0.25, "2": 0.5}
    assert r0["checks"]["flexible"]["pass_at_k"]["2"] == 1.0
    assert r0["checks"]["strict"]["se"] == pytest.approx(0.25)  # std of [0.5, 0] / sqrt(2)
    assert s["results"]["2"]["checks"]["strict"]["accuracy"] == 1.0
    assert s["primary_check"] == "strict"


# ------------------------------------------------ the eval run, with an oracle sampler
def oracle_sampler(task, right_every=2):
    """Answers problem i correctly iff i % right_every == 0 (clipped otherwise)."""
    answers = {p.question: (i, p) for i, p in enumerate(task.test)}

    def sample(model, tokenizer, prompts, samples, params, seed, batch_size):
        texts, clipped = [], []
        for prompt in prompts:
            q = prompt.rsplit("Question: ", 1)[1].removesuffix("\nAnswer:")
            i, p = answers[q]
            good = i % right_every == 0
            texts.append([f" so #### {p.answer if good else 'x'}"] * samples)
            clipped.append([not good] * samples)
        return texts, clipped

    return sample


def test_eval_with_oracle_exact_numbers(tmp_path, monkeypatch):
    task = load_task("arith:easy", n_test=10, n_train=100)
    monkeypatch.setattr(ev, "_sample", oracle_sampler(task))
    cfg = EvalConfig(model="unused", task="arith:easy", out=str(tmp_path / "o"), shots=(0, 3),
                     samples=3, n_problems=10, batch_size=6)
    s = evaluate(cfg, model=object(), tokenizer=object())
    for shots in ("0", "3"):
        r = s["results"][shots]
        assert r["checks"]["strict"]["accuracy"] == 0.5 and r["clipped_share"] == 0.5
        assert r["checks"]["custom_flexible"]["pass_at_k"] == {"1": 0.5, "2": 0.5, "3": 0.5}
    recs = read_jsonl(tmp_path / "o" / "completions.jsonl")
    assert len(recs) == 20
    three = [r for r in recs if r["shots"] == 3][0]
    assert three["prompt"].count("Question:") == 4 and three["prompt"].endswith("\nAnswer:")
    zero = [r for r in recs if r["shots"] == 0 and r["index"] == three["index"]][0]
    assert three["prompt"].endswith(zero["prompt"])


def strip_meta(summary):
    return {k: v for k, v in summary.items() if k != "meta"}


@pytest.fixture(scope="module")
def tiny():
    import torch

    from rlscale.models import load_model

    torch.set_num_threads(1)
    return load_model("micro:tiny", seed=0)


def tiny_cfg(out, **kw):
    base = dict(model="micro:tiny", task="arith", out=str(out), shots=(0, 2), samples=2,
                temperature=1.0, max_new_tokens=6, n_problems=6, batch_size=4)
    base.update(kw)
    return EvalConfig(**base)


def test_eval_micro_summary_recomputes_and_resume_is_exact(tmp_path, tiny):
    model, tok = tiny
    full = evaluate(tiny_cfg(tmp_path / "a"), model, tok)
    path = tmp_path / "a" / "completions.jsonl"
    on_disk = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert strip_meta(on_disk) == summarize(read_jsonl(path)) == strip_meta(full)
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 12 and {r["shots"] for r in read_jsonl(path)} == {0, 2}

    # interrupted after 2 of 6 chunks (2 problems each), with a torn half line behind them
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "config.json").rename(tmp_path / "b" / "config.json")
    (tmp_path / "b" / "completions.jsonl").write_text("".join(lines[:4]) + lines[4][:25])
    resumed = evaluate(tiny_cfg(tmp_path / "b"), model, tok)
    key = lambda r: (r["shots"], r["index"])  # noqa: E731
    got = sorted(read_jsonl(tmp_path / "b" / "completions.jsonl"), key=key)
    assert got == sorted(read_jsonl(path), key=key)  # the resumed run drew the same samples
    assert strip_meta(resumed) == strip_meta(full)

    # a rerun with everything done generates nothing; other settings are refused
    evaluate(tiny_cfg(tmp_path / "b"), model, tok)
    assert len(read_jsonl(tmp_path / "b" / "completions.jsonl")) == 12
    from rlscale.errors import UserError

    with pytest.raises(UserError, match="other settings.*temperature"):
        evaluate(tiny_cfg(tmp_path / "b", temperature=0.5), model, tok)


def test_shot_problems_cut_a_shot_count_and_leave_the_others_exact(tmp_path, tiny):
    """Fewer problems at one shot count: its records are the first n of the full run's, the
    other shot counts' records are the full run's exactly (same chunks, same seeds), the summary
    counts them per shot; a resumed run draws the same."""
    model, tok = tiny
    full = evaluate(tiny_cfg(tmp_path / "a", shots=(0, 1, 2)), model, tok)
    cut = evaluate(tiny_cfg(tmp_path / "b", shots=(0, 1, 2), shot_problems=[[1, 3]]), model, tok)
    assert {k: v["n_problems"] for k, v in cut["results"].items()} == {"0": 6, "1": 3, "2": 6}
    assert cut["meta"]["config"]["shot_problems"] == ((1, 3),)  # canonical: sorted int pairs
    key = lambda r: (r["shots"], r["index"])  # noqa: E731
    a = {key(r): r for r in read_jsonl(tmp_path / "a" / "completions.jsonl")}
    b = {key(r): r for r in read_jsonl(tmp_path / "b" / "completions.jsonl")}
    assert set(b) == set(a) - {(1, 3), (1, 4), (1, 5)}
    assert all(b[k] == a[k] for k in b if k[0] != 1)  # chunk 2-3 of 1-shot is cut to one row
    assert all(cut["results"][k] == full["results"][k] for k in ("0", "2"))
    lines = (tmp_path / "b" / "completions.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "b" / "completions.jsonl").write_text("".join(lines[:7]))
    again = evaluate(tiny_cfg(tmp_path / "b", shots=(0, 1, 2), shot_problems=((1, 3),)),
                     model, tok)
    assert strip_meta(again) == strip_meta(cut)
    from rlscale.errors import UserError

    with pytest.raises(UserError, match="--shot-problems"):
        evaluate(tiny_cfg(tmp_path / "c", shot_problems=((1, 3),)), model, tok)  # no 1-shot
    assert not (tmp_path / "c").exists()


def test_added_check_rescored_from_completions(tmp_path, tiny):
    model, tok = tiny
    evaluate(tiny_cfg(tmp_path, checks=("strict",), shots=(0,)), model, tok)
    s = evaluate(tiny_cfg(tmp_path, checks=("strict", "flexible"), shots=(0,)), model, tok)
    recs = read_jsonl(tmp_path / "completions.jsonl")
    assert all(set(r["scores"]) == {"strict", "flexible"} for r in recs) and len(recs) == 6
    assert strip_meta(s) == summarize(recs)


def test_heldout_test_loss(tiny, monkeypatch):
    model, tok = tiny
    probs = load_task("arith").test[:5]
    model.train()
    a = heldout_test_loss(model, tok, probs, samples=2, max_new_tokens=6, seed=3, batch_size=4)
    assert model.training  # mode restored for the trainer
    b = heldout_test_loss(model, tok, probs, samples=2, max_new_tokens=6, seed=3, batch_size=4)
    model.eval()
    assert a == b
    assert a["n_problems"] == 5 and a["n_samples"] == 2
    assert a["test_loss"] == pytest.approx(1 - a["pass1"]) and 0 <= a["pass1"] <= 1
    assert a["pass1"] == a["accuracy"]["custom_flexible"]
    assert set(a["accuracy"]) == {"strict", "flexible", "custom_flexible"}
    assert 0 <= a["clipped_share"] <= 1 and a["se"] >= 0
    # right samples per problem (of 2), for paired comparisons of two runs on these problems
    assert list(a["right"]) == ["custom_flexible"] and len(a["right"]["custom_flexible"]) == 5
    assert sum(a["right"]["custom_flexible"]) / 10 == pytest.approx(a["pass1"])
    strict = heldout_test_loss(model, tok, probs, samples=2, max_new_tokens=6, seed=3,
                               batch_size=4, reward="strict")
    assert list(strict["right"]) == ["strict", "custom_flexible"]
    seen = []
    real = ev._sample
    monkeypatch.setattr(ev, "_sample", lambda m, t, prompts, *a: seen.extend(prompts) or real(
        m, t, prompts, *a))
    train = load_task("arith", n_train=50).train
    c = heldout_test_loss(model, tok, probs, max_new_tokens=4, seed=3, exemplars=train[:2])
    assert c["n_problems"] == 5 and c["n_samples"] == 1
    assert all(p.count("Question:") == 3 and p.startswith(f"Question: {train[0].question}")
               for p in seen) and len(seen) == 5


# ------------------------------------------------ CLI errors: one line, exit 2, no output
def run_cli(capsys, *argv):
    rc = main(["eval", *argv])
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("extra, needle", [
    (["--shots", "0,7"], "--shots"),
    (["--shots", "a"], "--shots"),
    (["--samples", "0"], "--samples"),
    (["--checks", "strict,nope"], "--checks"),
    (["--temperature", "-1"], "--temperature"),
    (["--shot-problems", "1:x"], "--shot-problems"),
    (["--shots", "0,1", "--shot-problems", "2:5"], "--shot-problems"),
    (["--shots", "0,1", "--shot-problems", "1:0"], "--shot-problems"),
    (["--shots", "0,1", "--shot-problems", "1:2,1:3"], "--shot-problems"),
    (["--bogus"], "--bogus"),
])
def test_cli_bad_flag(tmp_path, capsys, extra, needle):
    out = tmp_path / "out"
    rc, err = run_cli(capsys, "--model", "micro:tiny", "--task", "arith", "--out", str(out),
                      *extra)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_malformed_data_file(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": \n')
    out = tmp_path / "out"
    rc, err = run_cli(capsys, "--model", "micro:tiny", "--task", str(bad), "--out", str(out))
    assert rc == 2 and f"{bad}:2:" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and not out.exists()


def test_cli_missing_model_dir(tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = run_cli(capsys, "--model", str(tmp_path / "nomodel"), "--task", "arith",
                      "--out", str(out))
    assert rc == 2 and "nomodel" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["eval", "--model", "micro:tiny", "--task", "arith:easy", "--shots", "0,1",
               "--samples", "2", "--temperature", "0.7", "--max-new-tokens", "4",
               "--n-problems", "3", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "custom_flexible" in text and "@2=" in text
    assert {p.name for p in out.iterdir()} == {"completions.jsonl", "summary.json",
                                               "config.json"}


@pytest.mark.slow
def test_eval_200_problems_shots_0_to_5(tmp_path, tiny):
    """Acceptance: a micro model over 200 problems and shots 0..5 runs to the end."""
    model, tok = tiny
    t = time.time()
    s = evaluate(EvalConfig(model="micro:tiny", task="arith", out=str(tmp_path), n_problems=200,
                            shots=(0, 1, 2, 3, 4, 5), max_new_tokens=int(os.environ.get(
                                "RLSCALE_EVAL_TOKENS", 16)), batch_size=64), model, tok)
    print(f"\n200 problems x shots 0..5 on micro:tiny: {time.time() - t:.1f} s")
    assert [s["results"][str(k)]["n_problems"] for k in range(6)] == [200] * 6
    assert strip_meta(s) == summarize(read_jsonl(tmp_path / "completions.jsonl"))
