"""Native decoding on the CPU: the fused C kernels of kernels.c around torch's matrix products.

Why: at micro scale a torch decoding step is ~40 small ops per layer and their dispatch costs
more than the arithmetic (1m rung: ~2 ms per step, of which ~0.6 ms are matrix products). Here a
layer is 4 matrix products (torch / MKL, into preallocated buffers) and 3 kernel calls: RMSNorm;
q/k norm + RoPE + cache write + attention; SwiGLU. Sampling is one kernel call per step.

The library (kernels.c and attention.c, sharing kernels.h) is compiled on first use with the
machine's C compiler (gcc or cc, -O3 -march=native, about a second) into rlscale's cache
directory, keyed by the source and the CPU, and loaded with ctypes: no build step at install
time and no torch headers. Where there is no compiler, or RLSCALE_NATIVE=0, or the model is not
fp32 on the CPU, decoding stays on the torch path of rlscale.models.fast (same math;
tests/test_native.py checks the two agree).

Training (pre-training and GRPO's log-prob forward + backward) uses the same library through
rlscale.models.native_train: RMSNorm, SwiGLU and q/k norm + RoPE forward and backward, one pass
each, and (pre-training) causal attention forward and backward (attention.c, session 33). A
first try at one-pass RMSNorm / SwiGLU kernels (session 2) measured 0.98-1.02x and was removed;
its SwiGLU ran scalar code (see kernels.c, "Row bodies"). Fixed and extended (session 31): the
600k rung's pre-training step 1.22-1.33x, docs/benchmarks.md.

Safety: the kernels' stack buffers are sized by MAX_HEAD_DIM and MAX_KEYS, passed to the compiler
from here; the kernels check their sizes against them and return an error code, which the
wrappers below turn into an exception. Every call goes through a wrapper that checks what ctypes
cannot (dtype, contiguity, shapes) before handing over raw pointers.
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

# compiled together into one library; the header is part of the build's key
SOURCES = tuple(Path(__file__).with_name(f) for f in ("kernels.c", "attention.c"))
HEADER = Path(__file__).with_name("kernels.h")
MAX_HEAD_DIM = 512  # the kernels' per-head stack buffers (compiled in with -D)
MAX_KEYS = 8192  # prompt + completion columns one query attends to (compiled in with -D)
DEFINES = [f"-DMAX_HEAD_DIM={MAX_HEAD_DIM}", f"-DMAX_KEYS={MAX_KEYS}"]
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
    src = b"".join(p.read_bytes() for p in (*SOURCES, HEADER)) + " ".join(DEFINES).encode()
    key = hashlib.sha256(src + _cpu_key().encode() + cc.encode()).hexdigest()[:16]
    out = cache_dir() / "native" / f"kernels-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = [cc, "-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC",
           *DEFINES, *map(str, SOURCES), "-o", str(tmp)]
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
    lib.rms_rows.argtypes = [P, P, P, I, I, F, ctypes.c_int]
    lib.swiglu_rows.argtypes = [P, P, I, I, ctypes.c_int]
    lib.attend_decode.argtypes = [P, P, F, P, P, P, P, P, P, P, P, P, I, I, P, I, I, I, I, I,
                                  ctypes.c_int]
    lib.attend_decode.restype = ctypes.c_int
    lib.sample_rows.argtypes = [P, I, I, F, P, P, I, P, P, P]
    lib.sample_rows.restype = ctypes.c_int
    # training (rlscale.models.native_train)
    lib.rms_train_fwd.argtypes = [P, P, P, I, I, F, ctypes.c_int]
    lib.rms_train_bwd.argtypes = [P, P, P, P, I, I, ctypes.c_int]
    lib.swiglu_train_bwd.argtypes = [P, P, P, I, I, ctypes.c_int]
    lib.qknorm_rope_fwd.argtypes = [P, I, P, P, P, P, P, I, I, I, I, F, ctypes.c_int]
    lib.qknorm_rope_fwd.restype = ctypes.c_int
    lib.qknorm_rope_bwd.argtypes = [P, P, I, P, P, P, P, P, P, I, I, I, I, ctypes.c_int]
    lib.qknorm_rope_bwd.restype = ctypes.c_int
    lib.causal_attn_fwd.argtypes = [P, I, P, I, P, I, P, P, I, I, I, I, I, ctypes.c_int]
    lib.causal_attn_fwd.restype = ctypes.c_int
    lib.causal_attn_bwd.argtypes = [P, I, P, I, P, I, P, P, P, P, P, P, I, I, I, I, I,
                                    ctypes.c_int]
    lib.causal_attn_bwd.restype = ctypes.c_int
    lib.ce_train_fwd.argtypes = [P, P, P, P, P, I, I, ctypes.c_int]
    lib.ce_train_fwd.restype = ctypes.c_int
    _lib = lib
    return _lib


def usable(dec, prompt_len: int, max_new: int) -> bool:
    """True when the native path serves this decoder (fp32 on the CPU) and these lengths."""
    return (dec.device.type == "cpu" and dec.dtype == torch.float32
            and dec.head_dim <= MAX_HEAD_DIM and prompt_len + max_new <= MAX_KEYS
            and library() is not None)


def _p(t: torch.Tensor) -> int:
    return t.data_ptr()


def _check(name: str, t: torch.Tensor, shape: tuple, dtype=torch.float32) -> None:
    """What ctypes cannot check before a raw pointer reaches C: dtype, layout, shape."""
    if t.dtype != dtype or t.device.type != "cpu" or not t.is_contiguous() or tuple(t.shape) != shape:
        raise ValueError(f"native kernels: {name} must be a contiguous {dtype} CPU tensor of "
                         f"shape {shape}, got {t.dtype} {tuple(t.shape)} on {t.device}")


class NativeState:
    """Caches of a batch being decoded natively: the prompt cache of each unique prompt
    ([U, nkv, P, hd] keys and values per layer, shared by the rows it owns), the completion
    cache of every row ([B, nkv, T, hd]), each row's owner, and the step buffers. Everything
    the kernels read or write through a pointer is checked here once, when it is built."""

    def __init__(self, dec, prompt_cache, prompt_valid, group: int, max_new: int):
        U, P = prompt_valid.shape
        B, nkv, hd = U * group, dec.n_kv, dec.head_dim
        if hd > MAX_HEAD_DIM or P + max_new > MAX_KEYS:
            raise ValueError(f"native kernels: head_dim {hd} (max {MAX_HEAD_DIM}) or prompt + "
                             f"completion {P + max_new} (max {MAX_KEYS}) too large; see usable()")
        self.P, self.T, self.col = P, max_new, 0
        self.pk = [c[0].contiguous() for c in prompt_cache]
        self.pv = [c[1].contiguous() for c in prompt_cache]
        self.pvalid = prompt_valid.to(torch.uint8).contiguous()
        self.owner = torch.arange(B).div(group, rounding_mode="floor")
        shape = (B, nkv, max_new, hd)
        self.ck = [torch.empty(shape) for _ in dec.layers]
        self.cv = [torch.empty(shape) for _ in dec.layers]
        self.dec = dec
        for i, L in enumerate(dec.layers):
            _check(f"prompt keys {i}", self.pk[i], (U, nkv, P, hd))
            _check(f"prompt values {i}", self.pv[i], (U, nkv, P, hd))
            if L["qk_norm"] is not None:
                _check(f"q/k norm {i}", L["qk_norm"], (dec.n_heads + nkv, hd))
        _check("final norm", dec.norm, (dec.embed.shape[1],))
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

    def check_step(self, x, pos, cos, sin) -> None:
        """The inputs of one decoding step: residual x [B, H], positions [B] inside the RoPE
        tables [max_pos, hd], and a completion column left to write."""
        B, hd = len(self.owner), self.dec.head_dim
        _check("residual", x, (B, self.dec.embed.shape[1]))
        _check("positions", pos, (B,), torch.int64)
        _check("rope cos", cos, (cos.shape[0], hd))
        _check("rope sin", sin, (cos.shape[0], hd))
        lo, hi = pos.aminmax()
        if int(lo) < 0 or int(hi) >= cos.shape[0] or self.col >= self.T:
            raise ValueError(f"native kernels: positions {int(lo)}..{int(hi)} outside the RoPE "
                             f"tables ({cos.shape[0]}) or completion cache full ({self.T})")

    def attend(self, i: int, eps: float, cos, sin, pos, nthreads: int) -> None:
        """Layer i's attention for every row (attend_decode, 21 arguments), from this state's
        qkv buffer into its o buffer. The pointers are this state's own tensors, checked when
        built, and the step's inputs (`check_step`); the kernel checks its sizes against its
        buffers and a refusal raises here."""
        d, qk_norm = self.dec, self.dec.layers[i]["qk_norm"]
        rc = library().attend_decode(
            _p(self.qkv), None if qk_norm is None else _p(qk_norm), eps, _p(cos), _p(sin),
            _p(pos), _p(self.pk[i]), _p(self.pv[i]), _p(self.pvalid), _p(self.owner),
            _p(self.ck[i]), _p(self.cv[i]), self.col, self.T, _p(self.o), len(self.owner),
            d.n_heads, d.n_kv, d.head_dim, self.P, nthreads)
        if rc:
            raise ValueError(f"native kernels: attend_decode refused head_dim {d.head_dim}, "
                             f"{self.P + self.col + 1} keys (limits {MAX_HEAD_DIM}, {MAX_KEYS})")


def decode(dec, tok, pos, state: NativeState, rope) -> torch.Tensor:
    """One new token per row, as FastDecoder.decode: tok, pos [B] -> logits [B, V]."""
    lib, nt = library(), torch.get_num_threads()
    B, H, eps = tok.shape[0], dec.embed.shape[1], dec.eps
    cos, sin = rope[0].contiguous(), rope[1].contiguous()
    pos = pos.contiguous()
    h, qkv, o, gu, act = state.h, state.qkv, state.o, state.gu, state.act
    x = dec.embed.index_select(0, tok)  # [B, H], a fresh tensor the residual adds into
    state.check_step(x, pos, cos, sin)
    for i, L in enumerate(dec.layers):
        lib.rms_rows(_p(x), _p(h), None, B, H, eps, nt)
        if L["bqkv"] is None:
            torch.mm(h, L["wqkv"].t(), out=qkv)
        else:
            torch.addmm(L["bqkv"], h, L["wqkv"].t(), out=qkv)
        state.attend(i, eps, cos, sin, pos, nt)
        x.addmm_(o, L["wo"].t())
        if L["bo"] is not None:
            x.add_(L["bo"])
        lib.rms_rows(_p(x), _p(h), None, B, H, eps, nt)
        torch.mm(h, L["wgu"].t(), out=gu)
        lib.swiglu_rows(_p(gu), _p(act), B, act.shape[1], nt)
        x.addmm_(act, L["wd"].t())
    lib.rms_rows(_p(x), _p(h), _p(dec.norm), B, H, eps, nt)
    state.col += 1
    return torch.mm(h, dec.lm_head.t(), out=state.logits)


def sample(logits, temperature: float, generator, banned, entropy=None) -> torch.Tensor | None:
    """Next tokens [B] as rollout.sample draws them (top_p = 1), or None when the native path
    does not apply. entropy: a contiguous fp32 [B] tensor that receives rollout.token_entropy
    of each row (temperature > 0 only). Raises RuntimeError on non-finite logits, as
    torch.multinomial does."""
    lib = library()
    if lib is None or logits.dtype != torch.float32 or logits.device.type != "cpu":
        return None
    logits = logits.contiguous()
    B, V = logits.shape
    u = (torch.rand(B, generator=generator) if temperature > 0 else torch.zeros(B)).contiguous()
    ban = (torch.unique(banned.to(torch.int64)).contiguous() if banned is not None
           else torch.empty(0, dtype=torch.int64))
    work = torch.empty(V)
    out = torch.empty(B, dtype=torch.int64)
    inv = 1.0 / temperature if temperature > 0 else 0.0
    if entropy is not None and (temperature <= 0 or entropy.shape != (B,)
                                or entropy.dtype != torch.float32 or not entropy.is_contiguous()):
        raise ValueError("native sampling: entropy needs temperature > 0 and a contiguous fp32 "
                         "[B] tensor")
    rc = lib.sample_rows(_p(logits), B, V, inv, _p(u), _p(ban), len(ban), _p(work), _p(out),
                         None if entropy is None else _p(entropy))
    if rc == 2:
        raise ValueError(f"native sampling: a banned token id is outside the vocabulary ({V})")
    if rc:
        raise RuntimeError("sampling: probability tensor contains inf or nan (diverged weights?)")
    return out
