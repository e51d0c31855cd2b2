"""GRPO math against hand-computed values."""

import math

import pytest
import torch

from rlscale.grpo import core


def test_group_advantages_grpo_and_drgrpo():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    adv, zero = core.group_advantages(r, 4, "grpo", eps=0.0)
    # group 1: mean 0.25, unbiased std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5
    assert torch.allclose(adv[:4], torch.tensor([1.5, -0.5, -0.5, -0.5]))
    assert torch.equal(adv[4:], torch.zeros(4))  # equal rewards: no signal, no NaN
    assert zero.tolist() == [False, True]
    adv_eps, _ = core.group_advantages(r, 4, "grpo", eps=1e-6)
    assert adv_eps[0].item() == pytest.approx(0.75 / (0.5 + 1e-6), rel=1e-7)
    dr, _ = core.group_advantages(r, 4, "drgrpo")
    assert torch.allclose(dr, torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]))


def test_group_advantages_rejects_bad_groups():
    with pytest.raises(ValueError):
        core.group_advantages(torch.ones(4), 1)
    with pytest.raises(ValueError):
        core.group_advantages(torch.ones(5), 2)
    with pytest.raises(ValueError):
        core.group_advantages(torch.ones(4), 2, "ppo")


def test_clipped_surrogate_four_cases():
    ratio = torch.tensor([[1.5, 1.5, 0.5, 0.5]])
    logp, old = torch.log(ratio), torch.zeros(1, 4)
    adv = torch.tensor([[1.0, -1.0, -1.0, 1.0]])
    loss, r, clipped = core.clipped_surrogate(logp, old, adv, 0.2, 0.2)
    assert torch.allclose(r, ratio)
    # A>0, rho>1+eps: clipped at 1.2; A<0, rho>1: unclipped 1.5; A<0, rho<0.8: clipped 0.8;
    # A>0, rho<1: unclipped -0.5
    assert torch.allclose(loss, torch.tensor([[-1.2, 1.5, 0.8, -0.5]]))
    assert clipped.tolist() == [[True, False, True, False]]
    # asymmetric clip (DAPO's clip-higher): eps_high 0.6 leaves 1.5 unclipped
    loss, _, clipped = core.clipped_surrogate(logp, old, adv, 0.2, 0.6)
    assert loss[0, 0].item() == pytest.approx(-1.5)
    assert not clipped[0, 0]


def test_clipped_surrogate_gradient_zero_when_clipped():
    logp = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_()
    loss, _, _ = core.clipped_surrogate(logp, torch.zeros(1, 2), torch.tensor([1.0]))
    loss.sum().backward()
    assert logp.grad[0, 0].item() == 0.0
    assert logp.grad[0, 1].item() == pytest.approx(-1.1)  # d(-rho)/dlogp = -rho


def test_dual_clip_bounds_negative_advantages_only():
    """clip_c (verl's clip_ratio_c): where A < 0 the loss is at most -A x c, with no gradient
    there; A >= 0 and ratios below c are untouched; 0 is off."""
    ratio = torch.tensor([[4.0, 2.0, 4.0, 0.5, 4.0]])
    logp = torch.log(ratio).requires_grad_()
    adv = torch.tensor([[-1.0, -1.0, 1.0, -2.0, 0.0]])
    loss, _, _ = core.clipped_surrogate(logp, torch.zeros(1, 5), adv, 0.2, 0.2, clip_c=3.0)
    # A<0, rho 4 > c: bounded at 3; A<0, rho 2: unclipped 2; A>0, rho 4: clipped at -1.2;
    # A<0, rho 0.5: clipped at 0.8 x 2; A=0: 0
    assert torch.allclose(loss, torch.tensor([[3.0, 2.0, -1.2, 1.6, 0.0]]))
    loss.sum().backward()
    assert logp.grad[0, 0].item() == 0.0 and logp.grad[0, 1].item() == pytest.approx(2.0)
    off, _, _ = core.clipped_surrogate(logp.detach(), torch.zeros(1, 5), adv, 0.2, 0.2)
    assert off[0, 0].item() == pytest.approx(4.0) and torch.equal(off[0, 1:], loss[0, 1:].detach())


def test_low_var_kl_values_and_clamp():
    logp = torch.zeros(4)
    ref = torch.tensor([1.0, -1.0, 0.0, 30.0])
    kl = core.low_var_kl(logp, ref)
    assert kl[0].item() == pytest.approx(math.e - 2)
    assert kl[1].item() == pytest.approx(math.exp(-1))
    assert kl[2].item() == 0.0
    assert kl[3].item() == 10.0


def test_aggregate_modes_and_chunking():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    m = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert core.aggregate(x, m, "token-mean").item() == pytest.approx(2.5)
    assert core.aggregate(x, m, "seq-mean-token-mean").item() == pytest.approx(3.0)
    # chunks with the mini-batch normalizer add up to the whole
    tm = core.aggregate(x[:1], m[:1], "token-mean", 4) + core.aggregate(x[1:], m[1:], "token-mean", 4)
    assert tm.item() == pytest.approx(2.5)
    sm = sum(core.aggregate(x[i:i + 1], m[i:i + 1], "seq-mean-token-mean", 2) for i in range(2))
    assert sm.item() == pytest.approx(3.0)
    with pytest.raises(ValueError):
        core.aggregate(x, m, "sum")


def test_grpo_loss_combines_pg_and_kl():
    logp = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    ref = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    adv = torch.tensor([2.0, -1.0])
    loss, stats = core.grpo_loss(logp, logp, adv, mask, ref_logp=ref, kl_coef=0.5)
    # ratio 1: pg per token = -A; kl only at [0, 0] = e - 2
    expected = ((-2) + (-2) + 1 + 0.5 * (math.e - 2)) / 3
    assert loss.item() == pytest.approx(expected)
    assert stats["tokens"].item() == 3
    assert stats["kl"].item() == pytest.approx(math.e - 2)
    assert stats["clipped"].item() == 0
    with pytest.raises(ValueError):
        core.grpo_loss(logp, logp, adv, mask, kl_coef=0.1)


def test_logprobs_and_entropy_from_logits():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # probs 1/4, 3/4
    lp = core.logprobs_from_logits(logits, torch.tensor([[1]]))
    assert lp.item() == pytest.approx(math.log(0.75))
    _, ent = core.logprobs_from_logits(logits, torch.tensor([[1]]), entropy=True)
    assert ent.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_low_var_kl_clamps_the_log_ratio_before_exp():
    """Far from the reference (log-ratio 200: exp overflows fp32) the penalty stays 10 and its
    gradient finite, where an unclamped exp gives inf and, through the clamp, a NaN gradient."""
    logp = torch.tensor([-200.0, 0.0, -1.0], requires_grad=True)
    ref = torch.tensor([0.0, -200.0, 0.0])
    kl = core.low_var_kl(logp, ref)
    kl.sum().backward()
    assert torch.isfinite(kl).all() and torch.isfinite(logp.grad).all()
    assert kl[0].item() == 10.0 and kl[2].item() == pytest.approx(math.e - 2)
    assert logp.grad[2].item() == pytest.approx(1 - math.e)  # d/dlogp (e^d - d - 1), d = 1


def test_logprobs_from_logits_entropy_outside_autograd():
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.tensor([[0, 6, 3], [1, 1, 2]])
    lp, ent = core.logprobs_from_logits(logits, labels, entropy=True, entropy_grad=False)
    ref = torch.log_softmax(logits, -1).gather(-1, labels[..., None]).squeeze(-1)
    assert torch.allclose(lp, ref) and lp.requires_grad and not ent.requires_grad
    assert torch.equal(lp, core.logprobs_from_logits(logits, labels))


@pytest.mark.parametrize("chunk,temperature", [(1, 1.0), (5, 0.7), (100, 1.3)])
def test_linear_logprobs_equal_the_whole_log_softmax(chunk, temperature):
    """Chunked log-probs and entropies of h @ w.T (the last chunk short, or one chunk for all)
    and their gradients in h and w, for any weights on the two outputs, equal those through the
    whole logits (gradients from autograd through log_softmax)."""
    g = torch.Generator().manual_seed(chunk)
    h = torch.randn(37, 16, generator=g, requires_grad=True)
    w = torch.randn(50, 16, generator=g, requires_grad=True)
    labels = torch.randint(0, 50, (37,), generator=g)
    a, b = torch.randn(37, generator=g), torch.randn(37, generator=g)

    def grads(lp, ent):
        return torch.autograd.grad((a * lp).sum() + (b * ent).sum(), (h, w))

    lp, ent = core.logprobs_from_logits((h @ w.t()) / temperature, labels, entropy=True)
    lp_c, ent_c = core.linear_logprobs(h, w, labels, temperature, chunk=chunk)
    assert torch.allclose(lp, lp_c, atol=1e-5) and torch.allclose(ent, ent_c, atol=1e-5)
    for x, y in zip(grads(lp, ent), grads(lp_c, ent_c)):
        assert torch.allclose(x, y, atol=1e-5, rtol=1e-4)
