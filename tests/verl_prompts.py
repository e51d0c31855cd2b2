"""The prompt tokens verl builds for a launch (runs in verl's environment, .venv-verl).

    python verl_prompts.py MODEL_DIR TRAIN.parquet N OVERRIDES.json
        -> "kwargs {...}" (the composed apply_chat_template_kwargs), then a JSON id list a line

As verl 0.9's agent loop does for a single-turn rollout: Hydra composes `ppo_trainer` with the
launch's overrides; the tokenizer is verl's hf_tokenizer of the model directory; the prompt
builder is its Continuous Token builder for the model's config.json model_type, given the
composed data.apply_chat_template_kwargs; each of the first N rows' "prompt" messages is rendered
by build_initial_tokens (the chat template with the generation prompt).
"""

import json
import os
import sys


def main(model_dir: str, parquet: str, n: int, overrides: list[str]) -> None:
    import pyarrow.parquet as pq
    from verl.utils import hf_tokenizer
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    from verl_validate import composed

    config = composed(overrides)
    with open(os.path.join(model_dir, "config.json")) as f:
        model_type = json.load(f)["model_type"]
    kwargs = dict(config.data.get("apply_chat_template_kwargs", {}))
    print("kwargs " + json.dumps(kwargs), flush=True)  # as Hydra typed them
    builder = create_continuous_token_builder(
        hf_tokenizer(model_dir), hf_model_type=model_type, chat_template_kwargs=kwargs)
    for row in pq.read_table(parquet).to_pylist()[:n]:
        print(json.dumps(builder.build_initial_tokens(list(row["prompt"]))), flush=True)


if __name__ == "__main__":
    with open(sys.argv[4]) as f:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]), json.load(f))
