"""How many prompts verl keeps from an exported parquet (runs in verl's environment, .venv-verl).

    python verl_dataset.py MODEL_DIR DATA.parquet OVERRIDES.json BUDGET...
        -> "kept N of M" a budget (data.max_prompt_length set to each in turn)

verl 0.9's RLHFDataset, built as its trainer builds it: the tokenizer is verl's hf_tokenizer of
the model directory, the config Hydra's `ppo_trainer` composed with the launch's overrides, its
`data` section. With data.filter_overlong_prompts on (verl's default, and the launch's), the
dataset drops every prompt longer than data.max_prompt_length as it measures them.
"""

import json
import sys


def main(model_dir: str, parquet: str, overrides: list[str], budgets: list[int]) -> None:
    import pyarrow.parquet as pq
    from verl.utils import hf_tokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from verl_validate import composed

    tokenizer = hf_tokenizer(model_dir)
    for budget in budgets:
        config = composed([o for o in overrides if not o.startswith("data.max_prompt_length=")]
                          + [f"data.max_prompt_length={budget}"])
        config.data.filter_overlong_prompts_workers = 1  # no worker pool for a handful of rows
        data = RLHFDataset(data_files=parquet, tokenizer=tokenizer, config=config.data)
        print(f"kept {len(data)} of {pq.read_metadata(parquet).num_rows}", flush=True)


if __name__ == "__main__":
    with open(sys.argv[3]) as f:
        main(sys.argv[1], sys.argv[2], json.load(f), [int(b) for b in sys.argv[4:]])
