"""Pre-training of micro rungs: schedule, corpus variants, packing, outputs, exact resume."""

import json
import math

import pytest

from rlscale.errors import UserError
from rlscale.corpus import Corpus, slipped
from rlscale.pretrain import PretrainConfig, lr_at, pretrain

TASK = "arith:easy,style=expr"


def small_cfg(**kw) -> PretrainConfig:
    base = dict(rung="micro:20k", task=TASK, tokens=8 * 64 * 12, batch_size=8, seq_len=64,
                n_problems=200, checkpoint_every=5, log_every=2, lr=3e-3)
    base.update(kw)
    return PretrainConfig(**base)


def test_lr_schedule_warmup_cosine_floor():
    cfg = PretrainConfig(tokens=100 * 32 * 128, lr=1e-2, warmup_frac=0.1, min_lr_frac=0.1)
    assert cfg.steps() == 100
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3)  # 1/10 of the way up
    assert lrs[9] == pytest.approx(1e-2)  # the peak at the end of warm-up
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # then non-increasing
    assert lrs[-1] == pytest.approx(1e-3, rel=0.01)  # down to the floor
    mid = 10 + (100 - 10) // 2
    assert lr_at(mid, cfg) == pytest.approx(1e-3 + 0.5 * 9e-3, rel=1e-6)


def test_slipped_moves_last_result_and_answer_together():
    sol = "12 + 5 = 17\n17 - 3 = 14\n#### 14"
    assert slipped(sol, 2) == "12 + 5 = 17\n17 - 3 = 16\n#### 16"
    assert slipped(sol, -1) == "12 + 5 = 17\n17 - 3 = 13\n#### 13"
    assert slipped("#### 4", 1) is None  # no step to slip
    assert slipped("5 + 5 = 10\n#### 11", 1) is None  # inconsistent chain: left alone


def _corpus(**kw):
    from rlscale.models import micro_tokenizer
    from rlscale.tasks import load_task

    cfg = small_cfg(**kw)
    task = load_task(cfg.task, n_test=1, n_train=cfg.n_problems)
    tok = micro_tokenizer(corpus=[p.question + " " + p.solution for p in task.train])
    return Corpus(task.train, tok, cfg), tok


def test_batches_are_seeded_by_step_and_packed_from_document_starts():
    corpus, tok = _corpus()
    x1, y1, m1 = corpus.batch(3)
    x2, y2, _ = corpus.batch(3)
    x3, _, _ = corpus.batch(4)
    assert x1.shape == y1.shape == m1.shape == (8, 64)
    assert x1.equal(x2) and y1.equal(y2)
    assert not x1.equal(x3)
    assert (x1[:, 1:] == y1[:, :-1]).all()  # targets are the inputs shifted by one
    assert all(tok.decode(r[:8]).startswith("Question") for r in x1)  # every row starts at a document
    assert m1.min() == 1.0  # loss on all tokens by default
    assert (x1 == tok.eos_token_id).any()  # documents are separated by EOS


def test_answer_only_loss_masks_the_prompts():
    corpus, tok = _corpus(loss_on="answer")
    x, y, m = corpus.batch(0)
    text_targets = tok.decode([t for t, k in zip(y[0].tolist(), m[0].tolist()) if k])
    assert "Question" not in text_targets and "####" in text_targets
    assert 0 < m.mean() < 1


def test_direct_and_slip_variants():
    corpus, tok = _corpus(direct_frac=1.0)
    import random

    ids, _ = corpus.document(0, random.Random(0))
    assert tok.decode(ids).split("Answer:")[1].strip().startswith("####")
    corpus, tok = _corpus(slip_frac=1.0)
    from rlscale.tasks import load_task

    train = load_task(TASK, n_test=1, n_train=200).train
    wrong = 0
    for i in range(20):
        ids, _ = corpus.document(i, random.Random(i))
        final = tok.decode(ids, skip_special_tokens=True).rsplit("####", 1)[1].strip()
        wrong += final != train[i].answer
    assert wrong == 20  # every chain slipped: the final answer is off


def test_short_rows_first_then_long_rows_with_the_same_tokens():
    corpus, tok = _corpus(short_seq_len=16, long_frac=0.25)  # 12 steps: the last 3 long
    shapes = [tuple(corpus.batch(s)[0].shape) for s in range(12)]
    assert shapes == [(32, 16)] * 9 + [(8, 64)] * 3
    x, y, m = corpus.batch(0)
    assert all(tok.decode(r[:8]).startswith("Question") for r in x)  # document starts
    assert y.shape == m.shape == x.shape
    corpus, _ = _corpus()  # default: every row seq_len long
    assert {tuple(corpus.batch(s)[0].shape) for s in range(12)} == {(8, 64)}
    with pytest.raises(UserError, match="short-seq-len"):
        small_cfg(short_seq_len=24).validate()


def test_blank_join_packs_rows_like_fewshot_prompts():
    corpus, tok = _corpus(blank_join_frac=1.0)
    text = tok.decode(corpus.batch(0)[0][0])
    assert "\n\nQuestion: " in text and tok.eos_token not in text
    corpus, tok = _corpus()  # default: EOS between documents
    assert "\n\nQuestion: " not in tok.decode(corpus.batch(0)[0][0])


def test_echo_documents_write_the_question_twice_and_leave_the_stream_alone_at_zero():
    import random

    corpus, tok = _corpus(echo_frac=1.0)
    text = tok.decode(corpus.document(3, random.Random(0))[0], skip_special_tokens=True)
    first, second = text.split("\n")
    assert first == second and "Answer:" not in text and "####" not in text
    mixed, tok = _corpus(echo_frac=0.5)
    rng = random.Random(0)
    echoed = sum("Answer:" not in tok.decode(mixed.document(i % 50, rng)[0]) for i in range(400))
    assert 150 < echoed < 250  # about half
    with pytest.raises(UserError, match="echo-frac"):
        small_cfg(echo_frac=1.5).validate()


def test_plain_variant_ends_in_prose_without_the_marker():
    import random

    from rlscale.corpus import plain_ending

    assert plain_ending(" 12 + 5 = 17\n#### 17") == " 12 + 5 = 17\nThe answer is 17."
    assert plain_ending(" no marker") == " no marker"
    corpus, tok = _corpus(plain_frac=1.0)
    for i in range(10):
        ids, _ = corpus.document(i, random.Random(i))
        text = tok.decode(ids, skip_special_tokens=True)
        assert "####" not in text and text.rstrip().endswith(".") and "The answer is " in text
    rng = random.Random(0)
    corpus, tok = _corpus(plain_frac=0.5)
    plain = sum("####" not in tok.decode(corpus.document(i % 50, rng)[0]) for i in range(400))
    assert 150 < plain < 250  # about half


def test_pretrain_outputs_flops_and_loss(tmp_path):
    cfg = small_cfg()
    res = pretrain(cfg, tmp_path / "run")
    assert res["done"] and res["steps"] == 12 and res["tokens"] == 12 * 8 * 64
    assert res["flops"] == pytest.approx(6 * res["N"] * res["tokens"])
    assert res["N"] < 30_000  # the 20k rung, non-embedding
    saved = json.loads((tmp_path / "run" / "pretrain.json").read_text())
    assert saved["tokens"] == res["tokens"] and saved["wall_s"] > 0
    curve = [json.loads(line) for line in (tmp_path / "run" / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [2, 4, 6, 8, 10, 12]
    assert curve[-1]["loss"] < curve[0]["loss"] and all(math.isfinite(r["loss"]) for r in curve)
    assert not (tmp_path / "run" / "checkpoints").exists()
    from rlscale.models import load_model

    model, tok = load_model(str(tmp_path / "run" / "model"))
    assert sum(p.numel() for p in model.parameters()) > res["N"]
    # a finished run is returned as is; a new run in the same place needs resume
    assert pretrain(cfg, tmp_path / "run", resume=True)["wall_s"] == res["wall_s"]
    with pytest.raises(UserError, match="already holds"):
        pretrain(cfg, tmp_path / "run")
    with pytest.raises(UserError, match="different lr"):
        pretrain(small_cfg(lr=1e-3), tmp_path / "run", resume=True)
    # a run saved before a setting existed ran at its default: it resumes at the default only
    state = tmp_path / "run" / "pretrain.json"
    old = json.loads(state.read_text())
    del old["config"]["easy_first"]
    state.write_text(json.dumps(old))
    assert pretrain(cfg, tmp_path / "run", resume=True)["wall_s"] == res["wall_s"]
    with pytest.raises(UserError, match="different easy_first"):
        pretrain(small_cfg(easy_first=0.5), tmp_path / "run", resume=True)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    cfg = small_cfg()
    pretrain(cfg, tmp_path / "full")
    real = Corpus.batch

    def dies_at_step_7(self, step):
        if step == 7:
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(Corpus, "batch", dies_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "cut")
    # interrupted before step 8's update: the last finished step (7) is saved on the way out
    # (the one before it is kept too, as the fallback if the newest is damaged)
    saved = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())
    assert saved[-1] == "step_0000007" and len(saved) <= 2
    monkeypatch.setattr(Corpus, "batch", real)
    pretrain(cfg, tmp_path / "cut", resume=True)
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    loss_steps = [json.loads(x)["step"] for x in
                  (tmp_path / "cut" / "loss.jsonl").read_text().splitlines()]
    assert loss_steps == [2, 4, 6, 8, 10, 12]  # nothing duplicated, nothing missing


@pytest.mark.parametrize("kw, field", [
    (dict(tokens=0), "tokens"), (dict(lr=-1.0), "lr"), (dict(loss_on="prompt"), "loss-on"),
    (dict(direct_frac=0.7, slip_frac=0.5), "slip-frac"), (dict(rung="micro:3t"), "micro rung"),
    (dict(slip_frac=0.5, plain_frac=0.6), "plain-frac"),
    (dict(matmul_precision="fp16"), "matmul-precision"),
])
def test_bad_settings_name_the_field(kw, field, tmp_path):
    with pytest.raises(UserError, match=field):
        pretrain(small_cfg(**kw), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_pretrain(tmp_path, capsys):
    from rlscale.cli import main

    out = tmp_path / "cli"
    rc = main(["pretrain", "--rung", "micro:20k", "--task", TASK, "--tokens", "2e3",
               "--batch-size", "4", "--seq-len", "32", "--n-problems", "100", "--out", str(out)])
    assert rc == 0 and (out / "model" / "model.safetensors").is_file()
    assert "N=" in capsys.readouterr().out
    assert main(["pretrain", "--tokens", "lots", "--out", str(out)]) == 2  # a bad flag: exit 2
    assert main(["pretrain", "--rung", "micro:20k", "--task", TASK, "--tokens", "2e3",
                 "--out", str(out)]) == 2  # exists, no --resume: one-line error


def test_direct_style_gives_bare_answers_to_one_question_style_only():
    import random

    from rlscale.arith import question_style

    corpus, tok = _corpus(task="arith:ladder", direct_frac=1.0, direct_style="expr",
                          slip_frac=0.5)
    styles = {"expr": [], "words": []}
    for i in range(60):
        text = tok.decode(corpus.document(i, random.Random(i))[0], skip_special_tokens=True)
        q, a = text.split("Answer:", 1)
        styles[question_style(q.removeprefix("Question:").strip())].append(
            a.strip().startswith("####"))
    assert styles["expr"] and all(styles["expr"])  # every expression answered bare
    assert styles["words"] and not any(styles["words"])  # every story worked out
    with pytest.raises(UserError, match="direct-style"):
        small_cfg(direct_style="latex").validate()
    small_cfg(direct_style="expr", direct_frac=0.9, slip_frac=0.5).validate()  # drawn apart


def test_direct_frac_other_answers_a_share_of_the_other_style_bare():
    """direct_frac_other: the stories' own share of bare answers beside the expressions'; at 0
    every document is drawn as before (the same variant for the same rng)."""
    import random

    from rlscale.arith import question_style

    def bare_share(**kw):
        corpus, tok = _corpus(task="arith:ladder", direct_style="expr", **kw)
        seen = {"expr": [], "words": []}
        for i in range(400):
            text = tok.decode(corpus.document(i % 100, random.Random(i))[0],
                              skip_special_tokens=True)
            q, a = text.split("Answer:", 1)
            seen[question_style(q.removeprefix("Question:").strip())].append(
                a.strip().startswith("####"))
        return {k: sum(v) / len(v) for k, v in seen.items()}, corpus

    shares, corpus = bare_share(direct_frac=0.7, direct_frac_other=0.3)
    assert 0.6 < shares["expr"] < 0.8 and 0.2 < shares["words"] < 0.4
    only_expr, before = bare_share(direct_frac=0.7)
    assert only_expr["words"] == 0 and 0.6 < only_expr["expr"] < 0.8
    zero, after = bare_share(direct_frac=0.7, direct_frac_other=0.0)
    assert all(before.document(i, random.Random(i)) == after.document(i, random.Random(i))
               for i in range(50))
    with pytest.raises(UserError, match="direct-frac-other"):
        small_cfg(direct_frac_other=0.3).validate()  # no style to be the other of
    with pytest.raises(UserError, match="direct-frac-other"):
        small_cfg(direct_style="expr", direct_frac_other=1.5).validate()


def test_easy_first_draws_the_first_steps_from_the_easy_levels_only():
    """easy_first: the first share of the steps packs only problems of level <= easy_max_level,
    the rest every level; at 0 every batch is the one drawn before (the same rng draws)."""
    import dataclasses

    import torch

    corpus, tok = _corpus(task="arith:ladder", easy_first=0.5, easy_max_level=1)
    assert 0 < len(corpus.easy) < len(corpus.prompt)
    easy = set(corpus.easy)

    def drawn(step, c=corpus):  # the problems whose whole prompt is packed into a batch's rows
        rows = c.batch(step)[0].tolist()
        return {i for i, q in enumerate(c.prompt) for row in rows
                if any(row[j:j + len(q)] == q for j in range(len(row) - len(q) + 1))}

    first, last = drawn(0), drawn(corpus.cfg.steps() - 1)
    assert first and first <= easy
    assert last - easy
    plain, _ = _corpus(task="arith:ladder")
    assert drawn(0, plain) - easy  # without the curriculum the first step holds harder ones
    off, _ = _corpus(task="arith:ladder", easy_first=0.0, easy_max_level=1)
    assert all(torch.equal(a, b) for s in (0, 5) for a, b in zip(plain.batch(s), off.batch(s)))
    with pytest.raises(UserError, match="easy-first"):
        small_cfg(easy_first=1.5).validate()
    with pytest.raises(UserError, match="easy-max-level"):
        small_cfg(easy_max_level=0).validate()
    unlevelled = [dataclasses.replace(p, level=None) for p in plain_problems()]
    with pytest.raises(UserError, match="easy-first: no train problem"):
        Corpus(unlevelled, tok, small_cfg(easy_first=0.5))


def test_multi_digit_first_draws_the_first_steps_from_multi_digit_starts_only():
    """multi_digit_first: the first share of the steps packs only stories whose start number has
    two or more digits, the rest anything; at 0 every batch is the one drawn before."""
    import dataclasses

    import torch

    from rlscale.arith import story_start
    from rlscale.tasks import load_task

    corpus, tok = _corpus(task="arith:ladder", multi_digit_first=0.5)
    probs = load_task("arith:ladder", n_test=1, n_train=corpus.cfg.n_problems).train  # _corpus'
    wide = {i for i, p in enumerate(probs) if (story_start(p.question) or 0) >= 10}
    assert set(corpus.multi_digit) == wide and 0 < len(wide) < len(probs)

    def drawn(step, c=corpus):  # the problems whose whole prompt is packed into a batch's rows
        rows = c.batch(step)[0].tolist()
        return {i for i, q in enumerate(c.prompt) for row in rows
                if any(row[j:j + len(q)] == q for j in range(len(row) - len(q) + 1))}

    half = round(0.5 * corpus.cfg.steps())
    assert drawn(0) and drawn(0) <= wide and drawn(half - 1) <= wide
    assert drawn(corpus.cfg.steps() - 1) - wide
    plain, _ = _corpus(task="arith:ladder")
    assert drawn(0, plain) - wide  # without the phase the first step holds other documents
    off, _ = _corpus(task="arith:ladder", multi_digit_first=0.0)
    assert all(torch.equal(a, b) for s in (0, 5) for a, b in zip(plain.batch(s), off.batch(s)))
    with pytest.raises(UserError, match="multi-digit-first"):
        small_cfg(multi_digit_first=1.5).validate()
    with pytest.raises(UserError, match="one first phase at a time"):
        small_cfg(multi_digit_first=0.2, easy_first=0.2).validate()
    expr_only = [dataclasses.replace(p, question="What is 3 + 4?") for p in plain_problems()]
    with pytest.raises(UserError, match="multi-digit-first: no train problem"):
        Corpus(expr_only, tok, small_cfg(multi_digit_first=0.5))


def plain_problems():
    from rlscale.tasks import load_task

    return load_task("arith:ladder", n_test=1, n_train=20).train


def test_loop_bf16_autocast_on_the_cpu_is_opt_in_and_trains_alike():
    """Loop(bf16=True) runs the forward under CPU bf16 autocast (benchmarks/pretrain_vs_hf.py
    --bf16 measures it); by default the CPU step is fp32, and the two first losses agree."""
    import copy

    import torch

    from rlscale.models import build_micro
    from rlscale.pretrain_loop import Loop

    class _Bar:
        def update(self, n):
            pass

    corpus, tok = _corpus()
    model = build_micro("micro:20k", tok, seed=0).train()
    fp32 = Loop(corpus.cfg, corpus, copy.deepcopy(model), "cpu", _Bar())
    bf16 = Loop(corpus.cfg, corpus, copy.deepcopy(model), "cpu", _Bar(), bf16=True)
    with fp32.amp():
        assert not torch.is_autocast_enabled("cpu")
    with bf16.amp():
        assert torch.is_autocast_enabled("cpu")
    a, b = fp32.step(0, 3e-3), bf16.step(0, 3e-3)
    assert math.isfinite(b) and abs(a - b) < 0.05 * a


def test_matmul_precision_is_scoped_to_the_step_and_recorded(tmp_path):
    """medium rounds a step's matmul inputs to bf16 where the CPU has bf16 products (oneDNN);
    the process-wide setting is restored after the step, even when the step fails, and
    pretrain.json records what ran."""
    import copy

    import torch

    from rlscale.models import build_micro
    from rlscale.pretrain_loop import Loop, bf16_matmuls, matmul_precision

    assert torch.get_float32_matmul_precision() == "highest"
    assert not bf16_matmuls("highest")
    with pytest.raises(RuntimeError), matmul_precision("medium"):
        raise RuntimeError
    assert torch.get_float32_matmul_precision() == "highest"

    class _Bar:
        def update(self, n):
            pass

    corpus, tok = _corpus()
    model = build_micro("micro:20k", tok, seed=0).train()
    runs = {}
    for p in ("highest", "medium", "bf16"):
        cfg = copy.copy(corpus.cfg)
        cfg.matmul_precision = p
        loop = Loop(cfg, corpus, copy.deepcopy(model), "cpu", _Bar())
        runs[p] = (loop.matmul_bf16, [loop.step(s, 3e-3) for s in range(3)])
        assert torch.get_float32_matmul_precision() == "highest"
        assert all(w.dtype == torch.float32 for w in loop.model.parameters())  # fp32 masters
        assert all(v.dtype == torch.float32 for st in loop.opt.state.values() for v in st.values())
    assert runs["highest"][0] is False and runs["medium"][0] is bf16_matmuls("medium")
    # bf16 products on every machine: rounded, so not fp32's numbers, but the same step
    assert runs["bf16"][0] is True and runs["bf16"][1] != runs["highest"][1]
    assert runs["bf16"][1] == pytest.approx(runs["highest"][1], rel=2e-2)
    # where the compact forward does not apply, transformers' forward under bf16 autocast
    cfg = copy.copy(corpus.cfg)
    cfg.matmul_precision = "bf16"
    hf = Loop(cfg, corpus, copy.deepcopy(model), "cpu", _Bar(), fast=False)
    with hf.amp():
        assert torch.is_autocast_enabled("cpu")
    assert hf.step(0, 3e-3) == pytest.approx(runs["highest"][1][0], rel=2e-2)
    (_, a), (bf16, b) = runs["highest"], runs["medium"]
    assert a[0] == pytest.approx(b[0], rel=1e-2)  # same weights and rows: rounding only
    if bf16:  # bf16 inputs: not the fp32 numbers
        assert a != b
    else:  # no bf16 products on this CPU: medium computes fp32
        assert a == b
    res = pretrain(small_cfg(tokens=8 * 64 * 2, matmul_precision="medium"), tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "pretrain.json").read_text())
    assert saved["matmul_bf16"] is bf16 and res["config"]["matmul_precision"] == "medium"
