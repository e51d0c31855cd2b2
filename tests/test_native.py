"""The native CPU kernels (rlscale.models.native): training pieces equal torch's math in value
and gradient, and the library degrades to the torch path when it cannot be built."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rlscale.models import native


@pytest.fixture
def lib():
    if native.library() is None:
        pytest.skip("no C compiler: the native kernels cannot be built here")
    return native.library()


@pytest.mark.parametrize("shape", [(7, 48), (300, 256)])  # under / over the threading size
def test_rmsnorm_value_and_grad(lib, shape):
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(shape, generator=g)).requires_grad_()
    up = torch.randn(shape, generator=g)
    y = native.RMSNorm.apply(x, 1e-6)
    (y * up).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    y2 = x2 * torch.rsqrt(x2.pow(2).mean(-1, keepdim=True) + 1e-6)
    (y2 * up).sum().backward()
    assert (y - y2).abs().max() < 1e-5
    assert (x.grad - x2.grad).abs().max() < 1e-5


@pytest.mark.parametrize("rows", [5, 400])
def test_swiglu_value_and_grad(lib, rows):
    g = torch.Generator().manual_seed(1)
    gu = (4 * torch.randn(rows, 2 * 96, generator=g)).requires_grad_()
    up = torch.randn(rows, 96, generator=g)
    a = native.SwiGLU.apply(gu)
    (a * up).sum().backward()
    gu2 = gu.detach().clone().requires_grad_()
    gate, u = gu2.chunk(2, -1)
    a2 = F.silu(gate) * u
    (a2 * up).sum().backward()
    assert (a - a2).abs().max() < 1e-5
    assert (gu.grad - gu2.grad).abs().max() < 1e-5


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


def test_allocator_setting_is_idempotent():
    first = native.keep_freed_memory()
    assert native.keep_freed_memory() is first
