"""Model specs: a local HF directory, a hub name, or `micro:<rung>`; and saving in HF format.

Safetensors only: a directory holding only pickle weights (pytorch_model.bin, *.pt) is refused,
never unpickled. trust_remote_code stays off unless the caller asks.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from rlscale.errors import UserError

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
HUB_PROBE_S = 5  # seconds to wait for the hub's host before calling it unreachable
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.bin")


def _resolve_dtype(dtype, device: str):
    import torch

    if dtype is None:  # CPU matmuls in bf16 are ~500x slower here than fp32 (DESIGN.md)
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        names = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16",
                 "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}
        if dtype not in names:
            raise UserError(f"--dtype: unknown dtype {dtype!r}; choose fp32, bf16 or fp16")
        return getattr(torch, names[dtype])
    return dtype


def check_model_dir(path: Path) -> None:
    """UserError naming the directory and what is missing or refused."""
    if not path.exists():
        raise UserError(f"{path}: no such model directory")
    if not path.is_dir():
        raise UserError(f"{path}: not a directory (a model is a directory with config.json)")
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: not a model directory: no config.json")
    if not any((path / f).is_file() for f in SAFE_WEIGHTS):
        pickles = [f for f in PICKLE_WEIGHTS if (path / f).is_file()]
        if pickles:
            raise UserError(
                f"{path}: weights only in pickle format ({pickles[0]}); rlscale loads "
                f"safetensors only (convert with save_pretrained(safe_serialization=True))"
            )
        raise UserError(f"{path}: no weights (expected model.safetensors)")
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json",
                                              "tokenizer.model", "vocab.json")):
        raise UserError(f"{path}: no tokenizer files (tokenizer.json / tokenizer_config.json)")


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or os.sep * 2 in spec or spec.count("/") > 1


def _hub_offline(spec: str) -> bool:
    """True when the hub cannot be used now (HF_HUB_OFFLINE, or its host does not answer within
    seconds) and the model is in the local cache; UserError when it is not cached either, so a
    hub name without network fails at once instead of after the hub client's retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except Exception as e:  # not a valid repo id
        raise UserError(f"--model: {spec!r} is neither a model directory nor a hub name "
                        f"({type(e).__name__})") from None
    offline = constants.HF_HUB_OFFLINE
    if not offline and not any(os.environ.get(v) for v in PROXY_VARS):  # a proxy: let it try
        url = urlparse(constants.ENDPOINT)
        try:
            socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https"
                                                                 else 80)),
                                     timeout=HUB_PROBE_S).close()
        except OSError:
            offline = True
    if offline and not cached:
        raise UserError(f"hub model {spec!r}: not in the local Hugging Face cache and the hub "
                        f"({constants.ENDPOINT}) cannot be reached; give a local model directory")
    return offline


def _source(spec: str) -> tuple[str, str, bool]:
    """(what from_pretrained is given, how errors name it, offline) for a directory or hub name."""
    path = Path(spec).expanduser()
    if path.exists() or _looks_like_path(spec):
        check_model_dir(path)
        return str(path), str(path), False
    return spec, f"hub model {spec!r}", _hub_offline(spec)


def _cannot_load(where: str, e: Exception) -> UserError:
    if "ignore_mismatched_sizes" in str(e):  # transformers' own report is many lines
        return UserError(f"{where}: weights in model.safetensors do not have the shapes "
                         "config.json describes (a config from another model?)")
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return UserError(f"{where}: cannot load ({type(e).__name__}: {first[:300]})")


def load_tokenizer(spec: str, trust_remote_code: bool = False):
    """The tokenizer of a spec (`load_model`'s), left-padded with a pad id, without the model."""
    spec = str(spec)
    if spec.startswith("micro:"):
        from rlscale.models.tokenizer import micro_tokenizer

        return micro_tokenizer()
    return _tokenizer(*_source(spec), trust_remote_code)


def _tokenizer(source: str, where: str, offline: bool, trust_remote_code: bool):
    from transformers import AutoTokenizer

    try:
        with _quiet_transformers():
            tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                local_files_only=offline)
    except Exception as e:  # no network, no such repo, gated, bad files, ...
        raise _cannot_load(where, e) from None
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token  # batched generation needs a pad id
    tok.padding_side = "left"
    return tok


def load_model(spec: str, device: str = "cpu", dtype=None, trust_remote_code: bool = False,
               seed: int = 0):
    """(model, tokenizer) for a spec: a local directory, a hub name or `micro:<rung>`.

    The model is in eval mode on `device`, dtype fp32 on CPU and bf16 on CUDA unless given.
    `micro:<rung>` is a fresh random-init rung (seeded by `seed`) with the micro tokenizer.
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = _resolve_dtype(dtype, device)
    spec = str(spec)
    if spec.startswith("micro:"):
        from rlscale.models.ladder import build_micro, rung_name

        tok = load_tokenizer(spec)
        model = build_micro(rung_name(spec), tok, seed=seed)
        return model.to(device=device, dtype=torch_dtype).eval(), tok
    source, where, offline = _source(spec)
    tok = _tokenizer(source, where, offline, trust_remote_code)
    try:
        with _quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=torch_dtype, use_safetensors=True,
                trust_remote_code=trust_remote_code, local_files_only=offline)
    except Exception as e:  # no network, no such repo, gated, bad config, ...
        raise _cannot_load(where, e) from None
    return model.to(device).eval(), tok


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' load reports, warnings and progress bars off (they run to many lines; a
    failure is said in one line by the caller), restored afterwards."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity(hf_logging.CRITICAL)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def save_model(model, tokenizer, directory) -> Path:
    """Save weights (safetensors), config and tokenizer so that
    `AutoModelForCausalLM.from_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)` load them.
    Written to a temporary sibling and renamed, so a killed save leaves no half model."""
    import shutil
    import tempfile

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        with _quiet_transformers():  # no "Writing model shards" bar on every checkpoint
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def set_activation_checkpointing(model, on: bool = True) -> None:
    """transformers' activation checkpointing (non-reentrant) on or off on an HF model, by its
    current names where the installed 5.x has them, else by the older gradient_checkpointing_*."""
    name = ("activation_checkpointing" if hasattr(model, "activation_checkpointing_enable")
            else "gradient_checkpointing")
    if on:
        getattr(model, f"{name}_enable")({"use_reentrant": False})
    else:
        getattr(model, f"{name}_disable")()
