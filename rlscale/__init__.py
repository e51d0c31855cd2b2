"""rlscale: how RL post-training (GRPO) of language models on math scales with size, data and compute."""

__version__ = "0.1.0"
