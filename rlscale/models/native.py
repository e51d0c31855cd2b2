"""Native decoding on the CPU: the fused C kernels of kernels.c around torch's matrix products.

Why: at micro scale a torch decoding step is ~40 small ops per layer and their dispatch costs
more than the arithmetic (1m rung: ~2 ms per step, of which ~0.6 ms are matrix products). Here a
layer is 4 matrix products (torch / MKL, into preallocated buffers) and 3 kernel calls: RMSNorm;
q/k norm + RoPE + cache write + attention; SwiGLU. Sampling is one kernel call per step.

The library is compiled on first use with the machine's C compiler (gcc or cc, -O3
-march=native, about a second) into rlscale's cache directory, keyed by the source and the CPU,
and loaded with ctypes: no build step at install time and no torch headers. Where there is no
compiler, or RLSCALE_NATIVE=0, or the model is not fp32 on the CPU, decoding stays on the torch
path of rlscale.models.fast (same math; tests/test_native.py checks the two agree).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("kernels.c")
MAX_HEAD_DIM = 512  # the kernels' per-head stack buffers
MAX_KEYS = 8192  # prompt + completion columns one query attends to
_lib = None
_tried = False


def _cpu_key() -> str:
    """What -march=native depends on: the CPU's model and flags."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    return platform.machine() + "|" + "|".join(lines)


def _compile() -> Path | None:
    from rlscale.models.tokenizer import cache_dir

    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        return None
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + _cpu_key().encode() + cc.encode()).hexdigest()[:16]
    out = cache_dir() / "native" / f"kernels-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = [cc, "-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC",
           str(SOURCE), "-o", str(tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        warnings.warn(f"rlscale: native kernels did not compile ({res.stderr.strip()[:200]}); "
                      f"decoding uses the torch path")
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, out)  # atomic: a concurrent process sees no half-written library
    return out


def library():
    """The loaded kernel library, or None (no compiler, failed build, RLSCALE_NATIVE=0)."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("RLSCALE_NATIVE", "1") == "0":
        return None
    path = _compile()
    if path is None:
        return None
    lib = ctypes.CDLL(str(path))
    P, I, F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    lib.rms_rows.argtypes = [P, P, P, P, I, I, F, ctypes.c_int]
    lib.swiglu_rows.argtypes = [P, P, I, I, ctypes.c_int]
    lib.attend_decode.argtypes = [P, P, F, P, P, P, P, P, P, P, P, P, I, I, P, I, I, I, I, I,
                                  ctypes.c_int]
    lib.rms_rows_bwd.argtypes = [P, P, P, P, I, I, ctypes.c_int]
    lib.swiglu_rows_bwd.argtypes = [P, P, P, I, I, ctypes.c_int]
    lib.sample_rows.argtypes = [P, I, I, F, P, P, I, P, P]
    lib.sample_rows.restype = ctypes.c_int
    _lib = lib
    return _lib


def usable(dec, prompt_len: int, max_new: int) -> bool:
    """True when the native path serves this decoder (fp32 on the CPU) and these lengths."""
    return (dec.device.type == "cpu" and dec.dtype == torch.float32
            and dec.head_dim <= MAX_HEAD_DIM and prompt_len + max_new <= MAX_KEYS
            and library() is not None)


def keep_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed memory for reuse instead of handing it back to the
    kernel (mmap threshold 32 MiB, its maximum; no trimming of the heap). Why: a CPU training
    step frees and reallocates the same tens of MB of activations every step, and by default
    glibc returns them, so every step pays fresh page faults on them (6m rung, 12 steps: 502k
    minor faults without this, 290k with it). Process-wide, idempotent; False where glibc is not the C
    library (nothing changes)."""
    global _malloc_tuned
    if _malloc_tuned is None:
        try:
            libc = ctypes.CDLL(None)
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            _malloc_tuned = False
            return False
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        _malloc_tuned = bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(
            mallopt(M_TRIM_THRESHOLD, 1 << 30))
    return _malloc_tuned


_malloc_tuned = None


def _p(t: torch.Tensor) -> int:
    return t.data_ptr()


class NativeState:
    """Caches of a batch being decoded natively: the prompt cache of each unique prompt
    ([U, nkv, P, hd] keys and values per layer, shared by the rows it owns), the completion
    cache of every row ([B, nkv, T, hd]), each row's owner, and the step buffers."""

    def __init__(self, dec, prompt_cache, prompt_valid, group: int, max_new: int):
        U, P = prompt_valid.shape
        B = U * group
        self.P, self.T, self.col = P, max_new, 0
        self.pk = [c[0].contiguous() for c in prompt_cache]
        self.pv = [c[1].contiguous() for c in prompt_cache]
        self.pvalid = prompt_valid.to(torch.uint8).contiguous()
        self.owner = torch.arange(B).div(group, rounding_mode="floor")
        shape = (B, dec.n_kv, max_new, dec.head_dim)
        self.ck = [torch.empty(shape) for _ in dec.layers]
        self.cv = [torch.empty(shape) for _ in dec.layers]
        self.dec = dec
        self._buffers(B)

    def _buffers(self, B: int) -> None:
        dec, L0 = self.dec, self.dec.layers[0]
        self.h = torch.empty(B, dec.embed.shape[1])
        self.qkv = torch.empty(B, L0["wqkv"].shape[0])
        self.o = torch.empty(B, dec.n_heads * dec.head_dim)
        self.gu = torch.empty(B, L0["wgu"].shape[0])
        self.act = torch.empty(B, L0["wd"].shape[1])
        self.logits = torch.empty(B, dec.lm_head.shape[0])

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (finished rows leave the compute)."""
        self.owner = self.owner.index_select(0, rows)
        self.ck = [c.index_select(0, rows) for c in self.ck]
        self.cv = [c.index_select(0, rows) for c in self.cv]
        self._buffers(len(rows))


def decode(dec, tok, pos, state: NativeState, rope) -> torch.Tensor:
    """One new token per row, as FastDecoder.decode: tok, pos [B] -> logits [B, V]."""
    lib, nt = library(), torch.get_num_threads()
    B, H = tok.shape[0], dec.embed.shape[1]
    nh, nkv, hd, eps = dec.n_heads, dec.n_kv, dec.head_dim, dec.eps
    cos, sin = rope[0].contiguous(), rope[1].contiguous()
    pos = pos.contiguous()
    h, qkv, o, gu, act = state.h, state.qkv, state.o, state.gu, state.act
    x = dec.embed.index_select(0, tok)  # [B, H], a fresh tensor the residual adds into
    for i, L in enumerate(dec.layers):
        lib.rms_rows(_p(x), _p(h), None, None, B, H, eps, nt)
        if L["bqkv"] is None:
            torch.mm(h, L["wqkv"].t(), out=qkv)
        else:
            torch.addmm(L["bqkv"], h, L["wqkv"].t(), out=qkv)
        qk_norm = L["qk_norm"]
        lib.attend_decode(_p(qkv), None if qk_norm is None else _p(qk_norm), eps, _p(cos),
                          _p(sin), _p(pos), _p(state.pk[i]), _p(state.pv[i]), _p(state.pvalid),
                          _p(state.owner), _p(state.ck[i]), _p(state.cv[i]), state.col, state.T,
                          _p(o), B, nh, nkv, hd, state.P, nt)
        x.addmm_(o, L["wo"].t())
        if L["bo"] is not None:
            x.add_(L["bo"])
        lib.rms_rows(_p(x), _p(h), None, None, B, H, eps, nt)
        torch.mm(h, L["wgu"].t(), out=gu)
        lib.swiglu_rows(_p(gu), _p(act), B, act.shape[1], nt)
        x.addmm_(act, L["wd"].t())
    lib.rms_rows(_p(x), _p(h), _p(dec.norm), None, B, H, eps, nt)
    state.col += 1
    return torch.mm(h, dec.lm_head.t(), out=state.logits)


def sample(logits, temperature: float, generator, banned) -> torch.Tensor | None:
    """Next tokens [B] as rollout.sample draws them (top_p = 1), or None when the native path
    does not apply. Raises RuntimeError on non-finite logits, as torch.multinomial does."""
    lib = library()
    if lib is None or logits.dtype != torch.float32 or logits.device.type != "cpu":
        return None
    logits = logits.contiguous()
    B, V = logits.shape
    u = (torch.rand(B, generator=generator) if temperature > 0 else torch.zeros(B)).contiguous()
    ban = (banned.to(torch.int64).contiguous() if banned is not None
           else torch.empty(0, dtype=torch.int64))
    work = torch.empty(V)
    out = torch.empty(B, dtype=torch.int64)
    inv = 1.0 / temperature if temperature > 0 else 0.0
    if lib.sample_rows(_p(logits), B, V, inv, _p(u), _p(ban), len(ban), _p(work), _p(out)):
        raise RuntimeError("sampling: probability tensor contains inf or nan (diverged weights?)")
    return out


def trainable(x: torch.Tensor) -> bool:
    """True when the training kernels below serve x: fp32, contiguous, on the CPU."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous()
            and library() is not None)


class RMSNorm(torch.autograd.Function):
    """y = x * rsqrt(mean(x^2) + eps) over the last dim, forward and backward one kernel pass
    each (the weight is folded into the next matrix, see fast.FastDecoder)."""

    @staticmethod
    def forward(ctx, x, eps):
        lib, dim = library(), x.shape[-1]
        y = torch.empty_like(x)
        s = torch.empty(x.numel() // dim)
        lib.rms_rows(_p(x), _p(y), None, _p(s), len(s), dim, eps, torch.get_num_threads())
        ctx.save_for_backward(y, s)
        return y

    @staticmethod
    def backward(ctx, g):
        y, s = ctx.saved_tensors
        g = g.contiguous()
        dx = torch.empty_like(g)
        library().rms_rows_bwd(_p(g), _p(y), _p(s), _p(dx), len(s), y.shape[-1],
                               torch.get_num_threads())
        return dx, None


class SwiGLU(torch.autograd.Function):
    """silu(gu[..., :I]) * gu[..., I:], forward and backward one kernel pass each."""

    @staticmethod
    def forward(ctx, gu):
        lib, inter = library(), gu.shape[-1] // 2
        out = gu.new_empty(gu.shape[:-1] + (inter,))
        lib.swiglu_rows(_p(gu), _p(out), gu.numel() // (2 * inter), inter,
                        torch.get_num_threads())
        ctx.save_for_backward(gu)
        return out

    @staticmethod
    def backward(ctx, dout):
        (gu,) = ctx.saved_tensors
        dout = dout.contiguous()
        dgu = torch.empty_like(gu)
        inter = gu.shape[-1] // 2
        library().swiglu_rows_bwd(_p(gu), _p(dout), _p(dgu), gu.numel() // (2 * inter), inter,
                                  torch.get_num_threads())
        return dgu
