"""The native CPU kernels (rlscale.models.native): sizes are checked in C and in the wrappers
(never a write past a buffer), and the library degrades to the torch path when it cannot be
built. Decoding and sampling against torch: tests/test_rollout.py."""

from __future__ import annotations

import pytest
import torch

from rlscale.models import native


@pytest.fixture
def lib():
    if native.library() is None:
        pytest.skip("no C compiler: the native kernels cannot be built here")
    return native.library()


def test_kernels_off_or_unbuildable_mean_torch_path(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setenv("RLSCALE_NATIVE", "0")
    assert native.library() is None
    assert native.sample(torch.zeros(2, 5), 1.0, None, None) is None  # caller uses torch
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.delenv("RLSCALE_NATIVE")
    monkeypatch.setenv("RLSCALE_CACHE", str(tmp_path))
    monkeypatch.setattr(native.shutil, "which", lambda name: None)  # no compiler on PATH
    assert native.library() is None
    assert not (tmp_path / "native").exists() or not any((tmp_path / "native").iterdir())


def test_broken_compiler_warns_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setenv("RLSCALE_CACHE", str(tmp_path))
    monkeypatch.setattr(native.shutil, "which", lambda name: "/bin/false")
    with pytest.warns(UserWarning, match="did not compile"):
        assert native.library() is None
    assert not list((tmp_path / "native").glob("*.so"))  # nothing half-written left behind


def _state(lib, tok_len=5, max_new=4, head_dim=None):
    from rlscale.models import build_micro, fast, micro_tokenizer
    from rlscale.rollout import left_pad

    tok = micro_tokenizer()
    model = build_micro("tiny", tok, seed=0)
    dec = fast.FastDecoder(model)
    ids, valid, pos = left_pad([list(range(2, 2 + tok_len))], tok.pad_token_id)
    rope = dec.rope_tables(ids.shape[1] + max_new)
    _, cache = dec.prefill(ids, pos, valid, rope)
    return dec, cache, valid, pos, rope


@torch.no_grad()
def test_limits_are_compiled_in_and_checked_in_c(lib):
    """The C side refuses sizes past its buffers (error code, nothing written) and the checked
    wrapper raises: a state whose key count went past MAX_KEYS cannot reach the kernel."""
    dec, cache, valid, pos, rope = _state(lib)
    state = native.NativeState(dec, cache, valid, 2, 4)
    tok = torch.tensor([3, 4])
    next_pos = (pos[:, -1] + 1).repeat_interleave(2)
    native.decode(dec, tok, next_pos, state, rope)  # fits: runs
    state.P = native.MAX_KEYS  # as if the prompt filled the key buffer: C must refuse
    before = [c.clone() for c in state.ck]
    with pytest.raises(ValueError, match="refused"):
        state.attend(0, dec.eps, rope[0].contiguous(), rope[1].contiguous(), next_pos + 1, 1)
    assert all(torch.equal(a.view(torch.int32), b.view(torch.int32))  # nothing written (bits:
               for a, b in zip(before, state.ck))  # the unwritten cache may hold NaNs)
    with pytest.raises(ValueError, match="too large"):
        native.NativeState(dec, cache, valid, 2, native.MAX_KEYS)


@torch.no_grad()
def test_wrappers_check_what_ctypes_cannot(lib):
    dec, cache, valid, pos, rope = _state(lib)
    state = native.NativeState(dec, cache, valid, 2, 2)
    tok = torch.tensor([3, 4])
    far = torch.full((2,), rope[0].shape[0])  # a position past the RoPE tables
    with pytest.raises(ValueError, match="positions"):
        native.decode(dec, tok, far, state, rope)
    with pytest.raises(ValueError, match="positions"):  # int32 positions: wrong dtype
        native.decode(dec, tok, torch.tensor([5, 5], dtype=torch.int32), state, rope)
    for _ in range(2):
        native.decode(dec, tok, torch.tensor([5, 5]), state, rope)
    with pytest.raises(ValueError, match="cache full"):  # the completion cache has 2 columns
        native.decode(dec, tok, torch.tensor([5, 5]), state, rope)
    with pytest.raises(ValueError, match="banned"):
        native.sample(torch.zeros(2, 5), 1.0, None, torch.tensor([7]))
