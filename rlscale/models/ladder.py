"""The micro ladder: Qwen3-architecture rungs about 3x apart in non-embedding parameters.

Each rung is a small typed config; `MicroRung.config(tokenizer)` turns it into transformers'
`Qwen3Config`, so a rung is an ordinary Hugging Face model (save_pretrained / from_pretrained).
A rung is named by its approximate non-embedding parameter count N (the N of every law, see
`non_embedding_params`); a test checks each name against the measured count.

Per layer N is about 4 h^2 (attention, MHA) + 3 h I (SwiGLU MLP), so 13 h^2 with I = 3h.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlscale.errors import UserError


@dataclass(frozen=True)
class MicroRung:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    kv_heads: int | None = None  # None: same as heads (MHA)
    tie_embeddings: bool = True  # small rungs: the embedding would dominate N otherwise
    rope_theta: float = 10000.0  # short contexts: the classic base resolves positions best
    max_positions: int = 4096

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def config(self, tokenizer):
        """The transformers Qwen3Config of this rung for `tokenizer`'s vocabulary."""
        from transformers import Qwen3Config

        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} not divisible by heads {self.heads}")
        return Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads or self.heads,
            # explicit: Qwen3Config's default head_dim is 128 whatever the width
            head_dim=self.head_dim,
            intermediate_size=self.intermediate,
            max_position_embeddings=self.max_positions,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            tie_word_embeddings=self.tie_embeddings,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
            use_cache=True,
        )


# name -> rung; names are the approximate non-embedding parameter count
LADDER: dict[str, MicroRung] = {
    "20k": MicroRung(hidden=32, layers=2, heads=2, intermediate=64),
    "60k": MicroRung(hidden=48, layers=2, heads=3, intermediate=144),
    "200k": MicroRung(hidden=64, layers=4, heads=4, intermediate=192),
    # I = 3.33 h: 646k, so that 20k..600k spans more than 30x
    "600k": MicroRung(hidden=96, layers=5, heads=3, intermediate=320),
    # hidden 128 x 4 layers and 256 x 8: the reference models of DESIGN.md's measurements
    "1m": MicroRung(hidden=128, layers=4, heads=4, intermediate=384),
    "2m": MicroRung(hidden=160, layers=6, heads=5, intermediate=480),
    "6m": MicroRung(hidden=256, layers=8, heads=8, intermediate=768),
    "20m": MicroRung(hidden=384, layers=10, heads=6, intermediate=1152),
    "100m": MicroRung(hidden=768, layers=13, heads=12, intermediate=2304),
}
# the geometric ladders (about 3x apart) a study sweeps; "1m" is a benchmark rung off the ladder
CPU_RUNGS = ("20k", "60k", "200k", "600k", "2m", "6m")
GPU_RUNGS = CPU_RUNGS + ("20m", "100m")
ALIASES = {"tiny": "20k"}


def rung_name(rung: str) -> str:
    """Canonical rung name from 'micro:2m', '2m', 'micro:tiny', ...; UserError if unknown."""
    name = rung.removeprefix("micro:").strip().lower()
    name = ALIASES.get(name, name)
    if name not in LADDER:
        choices = ", ".join(f"micro:{n}" for n in [*ALIASES, *LADDER])
        raise UserError(f"unknown micro rung {rung!r}; choose one of {choices}")
    return name


def non_embedding_params(model) -> int:
    """N: all parameters minus the input embeddings, and minus the LM head when it is tied.

    This is the N of every scaling law in rlscale (the Kaplan convention: the vocabulary
    matrices do not count; an untied LM head is an ordinary layer and counts). Parameters are
    counted once even when shared.
    """
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already yields a tied weight once
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    emb = model.get_input_embeddings().weight
    return total - emb.numel()


def build_micro(rung: str, tokenizer, seed: int = 0):
    """A fresh random-init rung (fp32, eval mode), seeded: same seed, same weights."""
    import torch
    from transformers import Qwen3ForCausalLM

    config = LADDER[rung_name(rung)].config(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    return model.float().eval()
