"""The k-shot chat prompts lm-eval builds (runs in the interop environment, .venv-verl, which
`make verl-env` gives lm_eval 0.4.13).

    python lmeval_prompts.py MODEL_DIR CASES.json  -> one JSON object a line

Each case is {"exemplars": [{question, answer}...], "doc": {question, answer}, "system": text
or absent (lm-eval's system_instruction)}. lm-eval's own
GSM8K task (its shipped gsm8k.yaml: doc_to_text, doc_to_target, delimiters), pointed at a local
JSON file whose train split is the case's exemplars in order and drawn by its `first_n` sampler,
builds the doc's context with `fewshot_context(..., apply_chat_template=True)` for
fewshot_as_multiturn False and True; each message list is printed with the text lm-eval's HF
model renders from it (`HFLM.apply_chat_template`: the tokenizer's template, with the
generation prompt, not continuing the final message).
"""

import json
import os
import sys
import tempfile


def task_for(exemplars: list[dict], doc: dict, workdir: str):
    import lm_eval
    import yaml
    from lm_eval.api.task import ConfigurableTask

    with open(os.path.join(os.path.dirname(lm_eval.__file__), "tasks", "gsm8k",
                           "gsm8k.yaml")) as f:
        config = yaml.safe_load(f)
    files = {}
    # a split needs a row: with no exemplars the train split holds the doc (never drawn)
    for split, rows in (("train", exemplars or [doc]), ("test", [doc])):
        files[split] = os.path.join(workdir, f"{split}.jsonl")
        with open(files[split], "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    config.pop("dataset_name", None)
    config.update(dataset_path="json", dataset_kwargs={"data_files": files},
                  fewshot_config={"sampler": "first_n"})
    return ConfigurableTask(config=config)


def main(model_dir: str, cases: list[dict]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)

    def render(messages, add_generation_prompt=True):  # as HFLM.apply_chat_template
        return tok.apply_chat_template(messages, tokenize=False,
                                       add_generation_prompt=add_generation_prompt,
                                       continue_final_message=not add_generation_prompt)

    for case in cases:
        with tempfile.TemporaryDirectory() as d:
            task = task_for(case["exemplars"], case["doc"], d)
            doc = task.test_docs()[0]
            out = {}
            for multiturn in (False, True):
                messages, text = (task.fewshot_context(
                    doc, len(case["exemplars"]), system_instruction=case.get("system"),
                    apply_chat_template=True, fewshot_as_multiturn=multiturn,
                    chat_template=template)
                    for template in (lambda m, **kw: m, render))
                out[str(multiturn)] = {"messages": messages, "text": text}
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with open(sys.argv[2]) as f, tempfile.TemporaryDirectory() as cache:
        os.environ["HF_DATASETS_CACHE"] = cache  # before datasets is imported: not the user's
        main(sys.argv[1], json.load(f))
