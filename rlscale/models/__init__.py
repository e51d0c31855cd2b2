"""Models: HF causal LMs from a directory / the hub, and the micro ladder (Qwen3 rungs + BPE).

Spec strings accepted everywhere: a local directory (safetensors), a hub name, or
`micro:<rung>` (see `LADDER`; `micro:tiny` is the smallest rung).
"""

from rlscale.models.ladder import (
    ALIASES,
    CPU_RUNGS,
    GPU_RUNGS,
    LADDER,
    MicroRung,
    build_micro,
    non_embedding_params,
    rung_name,
)
from rlscale.models.loading import (check_model_dir, load_model, load_tokenizer, save_model,
                                    set_activation_checkpointing)
from rlscale.models.tokenizer import micro_tokenizer

__all__ = [
    "ALIASES",
    "CPU_RUNGS",
    "GPU_RUNGS",
    "LADDER",
    "MicroRung",
    "build_micro",
    "check_model_dir",
    "load_model",
    "load_tokenizer",
    "micro_tokenizer",
    "non_embedding_params",
    "rung_name",
    "save_model",
    "set_activation_checkpointing",
]
