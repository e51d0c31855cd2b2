"""The full-size model path on the CPU: Qwen2.5-0.5B and Qwen3-0.6B architectures (random init,
rlscale.models.archs) saved as HF directories, then `rlscale eval` on both and one `rlscale train`
step on Qwen3-0.6B by directory (Qwen2.5's training path at small width: the suite's time), each
in its own process; plus the bf16 check on a micro rung.

One model at a time (a 0.5B train step peaks near 10 GB here); prompts, groups and tokens are
as few as the commands allow. `pytest -s tests/test_fullsize.py` prints each command's wall time
and peak RSS (`fullsize ...` lines): docs/benchmarks.md records them. Nothing here is timed.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from rlscale.models import micro_tokenizer, non_embedding_params, save_model
from rlscale.models.archs import build_random

# non-embedding parameters of the released models (their model cards: 0.36B and 0.44B)
EXPECTED_N = {"qwen2.5-0.5b": 357_898_112, "qwen3-0.6b": 440_467_456}
TIMEOUT_S = 3600  # generous: on a shared 2-core machine a niced step can wait for a core


def rlscale(*args, tmp):
    """Run an rlscale command in its own process: (returncode, stderr, wall seconds, CPU
    seconds, peak RSS GB) of that process alone (os.wait4). CPU seconds say more than wall
    time on a shared machine. On timeout its whole process group is killed."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    err_path = tmp / f"stderr-{args[0]}.txt"
    t0 = time.perf_counter()
    with open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "rlscale.cli", *args], cwd=tmp, env=env,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        timer = threading.Timer(TIMEOUT_S, os.killpg, (proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return (proc.returncode, err_path.read_text(), time.perf_counter() - t0,
            usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1e6)


# The full-size train step (~80 s, 9 GB, a 7.5 GB checkpoint) runs on the larger architecture;
# the other's training path runs on its own config at small width (same class, same code path).
FULL_TRAIN = {"qwen2.5-0.5b": False, "qwen3-0.6b": True}


def _eval(model_dir, tmp_path):
    rc, err, *cost = rlscale("eval", "--model", str(model_dir), "--task", "arith",
                             "--n-problems", "2", "--max-new-tokens", "4", "--shots", "0",
                             "--out", str(tmp_path / "eval"), tmp=tmp_path)
    assert rc == 0, err[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary  # the held-out accuracy table exists (random weights: accuracy near 0)
    return cost


def _train(model_dir, tmp_path):
    run = tmp_path / f"run-{model_dir.name}"
    rc, err, *cost = rlscale("train", "--model", str(model_dir), "--task", "arith",
                             "--steps", "1", "--batch-size", "2", "--group-size", "2",
                             "--mini-batch-size", "2", "--max-new-tokens", "4",
                             "--heldout", "1", "--eval-every", "0", "--checkpoint-every", "1",
                             "--out", str(run), tmp=tmp_path)
    assert rc == 0, err[-3000:]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [0, 1] and rows[1]["C_paper"] > 0
    return json.loads((run / "config.json").read_text()), cost


def _small(arch, tok, path):
    """The architecture's own config class at small width: its training path, in seconds."""
    import transformers

    from rlscale.models.archs import ARCHS

    cls, settings = ARCHS[arch]
    small = {k: v for k, v in settings.items() if k not in ("layer_types", "max_window_layers")}
    small.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    cfg = getattr(transformers, cls)(**small, eos_token_id=tok.eos_token_id,
                                     pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    assert type(model).__name__ == cls.replace("Config", "ForCausalLM")
    return save_model(model, tok, path)


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(EXPECTED_N))
def test_fullsize_model_dir_eval_and_train_step(tmp_path, arch):
    tok = micro_tokenizer()
    model = build_random(arch, tok)
    assert non_embedding_params(model) == EXPECTED_N[arch]
    model_dir = save_model(model, tok, tmp_path / arch)
    del model
    assert (model_dir / "model.safetensors").is_file() or \
        (model_dir / "model.safetensors.index.json").is_file()
    ev_s, ev_cpu, ev_gb = _eval(model_dir, tmp_path)
    train_dir = model_dir if FULL_TRAIN[arch] else _small(arch, tok, tmp_path / f"{arch}-small")
    config, (tr_s, tr_cpu, tr_gb) = _train(train_dir, tmp_path)
    if FULL_TRAIN[arch]:
        assert config["N"] == EXPECTED_N[arch]
    else:
        assert 0 < config["N"] < 10**6
    print(f"\nfullsize arch={arch} N={EXPECTED_N[arch]} eval_wall_s={ev_s:.0f} "
          f"eval_cpu_s={ev_cpu:.0f} eval_peak_rss_gb={ev_gb:.1f} train_full={FULL_TRAIN[arch]} "
          f"train_wall_s={tr_s:.0f} train_cpu_s={tr_cpu:.0f} train_peak_rss_gb={tr_gb:.1f}")


# -- bf16 on a micro rung -------------------------------------------------------------------------
# Tolerances: bf16 keeps 8 mantissa bits (relative rounding 2^-8 = 0.4%) per operation; a
# token's log-prob sums hundreds of rounded products, so its error is a few times that scale
# in absolute nats. Chosen from that arithmetic, before looking at the measured gaps.
LOGPROB_ATOL = 0.15  # nats, per token
LOSS_ATOL = 0.02  # the GRPO surrogate is an advantage-weighted mean of ratios near 1
GRAD_COS_MIN = 0.95  # the bf16 update points the way the fp32 one does


def test_bf16_step_matches_fp32_on_a_micro_rung():
    """One GRPO step's log-probs, loss and gradient on a fixed rollout (4 prompts x 4
    completions) through the trainer's own pieces (batch_for_logprobs, sequence_logprobs,
    grpo_loss), with the weights and activations in bf16 vs fp32. The sampler's log-probs are
    the fp32 ones in both, so the bf16 ratio carries bf16's error into the loss."""
    from rlscale.grpo.core import group_advantages, grpo_loss
    from rlscale.grpo.logprobs import batch_for_logprobs, sequence_logprobs
    from rlscale.models import build_micro

    tok = micro_tokenizer()
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, len(tok), (n,), generator=gen).tolist() for n in (9, 12, 7, 10)]
    prompt_ids = [p for p in prompts for _ in range(4)]
    completion_ids = [torch.randint(3, len(tok), (n,), generator=gen).tolist()
                      for n in (16, 11, 16, 5) * 4]
    batch = batch_for_logprobs(prompt_ids, completion_ids, tok.pad_token_id)
    adv, _ = group_advantages(torch.tensor([1.0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1, 0, 1]), 4)
    reference = build_micro("tiny", tok, seed=0).float()
    old = sequence_logprobs(reference, *batch).detach()

    def step(dtype):
        model = build_micro("tiny", tok, seed=0).to(dtype)
        lp = sequence_logprobs(model, *batch)
        loss, _ = grpo_loss(lp, old, adv.to(lp.dtype), batch[3])
        loss.backward()
        grad = torch.cat([p.grad.float().flatten() for p in model.parameters()])
        return lp.detach().float(), float(loss.detach()), grad

    lp32, loss32, g32 = step(torch.float32)
    lp16, loss16, g16 = step(torch.bfloat16)
    gap = (lp32 - lp16).abs()[batch[3].bool()]
    cos = float(torch.nn.functional.cosine_similarity(g32, g16, dim=0))
    print(f"\nbf16_vs_fp32 rung=tiny logprob_max_abs_gap={gap.max():.4f} "
          f"logprob_mean_abs_gap={gap.mean():.4f} loss_fp32={loss32:.5f} loss_bf16={loss16:.5f} "
          f"grad_cosine={cos:.4f}")
    assert (lp32 - old).abs().max() == 0  # fp32 reproduces the sampler exactly
    assert gap.max() < LOGPROB_ATOL
    assert abs(loss32 - loss16) < LOSS_ATOL
    assert cos > GRAD_COS_MIN


def test_hub_name_without_network_is_one_line_error_at_once(tmp_path, monkeypatch):
    """No hub client call at all when the hub's host does not answer and nothing is cached."""
    import transformers
    from huggingface_hub import constants

    from rlscale import cli

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(v, raising=False)

    def no_network(*a, **kw):
        raise AssertionError("the hub client was called")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_network)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_network)
    rc = cli.main(["eval", "--model", "rlscale-tests/no-such-model", "--task", "arith",
                   "--out", str(tmp_path / "e")])
    assert rc == 2
