"""GRPO post-training: `core` (pure algorithm functions), `config` (TrainConfig, presets),
`trainer` (`train(cfg, run_dir, resume)`), `checkpoint`, and `cli` (the `train` subcommand)."""
