"""The prompts of an exported verl run: its parquet rows, and verl's prompt budget for them.

`prompt_rows` builds the run's train and held-out prompts as verl's RLHF rows (the same split,
exemplars and messages as `rlscale train`), `write_verl_data` writes them, and
`fit_prompt_length` sets data.max_prompt_length to the longest of them as verl measures it
(verl drops longer prompts, so a shorter budget would train verl on another set);
`template_settings` is what verl's data.apply_chat_template_kwargs must hold to render them as
rlscale does. tests/test_verl.py checks them with verl's own builder and dataset.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rlscale.errors import UserError
from rlscale.files import atomic_write_bytes
from rlscale.models.tokenizer import chat_style

DEFAULT_PROMPT_LENGTH = 512  # data.max_prompt_length when the prompts are not written here
RAW_PROMPT_TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"


def data_file(out: str | Path, split: str) -> Path:
    """Where `write_verl_data` puts a split's prompts."""
    return Path(out) / f"{split}.parquet"


def prompt_rows(cfg) -> dict[str, list[dict]]:
    """The run's prompts as verl RLHF rows, per split (train: the U problems the run cycles).

    Same task split, held-out set and few-shot exemplars as `rlscale train`; a row is
    {data_source, prompt: [{role, content}...], ability, reward_model: {style, ground_truth},
    extra_info: {split, index}}; the prompt is one user message, or under --chat its ChatStyle's
    messages (a system message, the exemplars' turns: `tasks.prompt_messages`), which verl
    renders with the tokenizer's chat template as rlscale does.
    """
    from rlscale.tasks import DEFAULT_N_TRAIN, fewshot_exemplars, load_task, prompt_messages

    unique = cfg.unique_prompts()
    head = cfg.task.split(":", 1)[0]
    n_train = unique if unique > DEFAULT_N_TRAIN.get(head, unique) else None
    task = load_task(cfg.task, seed=cfg.data_seed, n_test=cfg.heldout, n_train=n_train)
    if len(task.train) < unique:
        raise UserError(f"--config: task {cfg.task} has {len(task.train)} training problems, "
                        f"the run needs {unique} (steps x batch_size / reuse)")
    shots = fewshot_exemplars(task.train, cfg.fewshot, cfg.data_seed)
    style = chat_style(cfg)
    messages = style.messages if style else prompt_messages
    return {split: [{"data_source": f"rlscale/{task.name}",
                     "prompt": messages(p, shots),
                     "ability": "math",
                     "reward_model": {"style": "rule", "ground_truth": str(p.answer)},
                     "extra_info": {"split": split, "index": i}} for i, p in enumerate(problems)]
            for split, problems in (("train", task.train[:unique]), ("test", task.test))}


def write_verl_data(cfg, out: str | Path, rows: dict | None = None) -> tuple[Path, Path]:
    """`prompt_rows` as OUT/train.parquet and OUT/test.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = rows or prompt_rows(cfg)
    for split in ("train", "test"):
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows[split]), sink)
        atomic_write_bytes(data_file(out, split), sink.getvalue().to_pybytes())
    return data_file(out, "train"), data_file(out, "test")


def template_settings(cfg) -> dict:
    """What verl's data.apply_chat_template_kwargs must hold to render rlscale's prompts: the
    raw template unless --chat (then the model's template, with its ChatStyle's variables)."""
    style = chat_style(cfg)
    return dict(style.template_vars) if style else {"chat_template": RAW_PROMPT_TEMPLATE}


def prompt_lengths(cfg, tokenizer, rows: list[dict]) -> list[int]:
    """Each row's prompt in tokens as verl's dataset measures it for data.max_prompt_length
    (its chat template with the generation prompt, tokenized without special tokens added)."""
    from rlscale.models.tokenizer import encode_ids

    kw = template_settings(cfg)
    texts = [tokenizer.apply_chat_template(list(r["prompt"]), tokenize=False,
                                           add_generation_prompt=True, **kw) for r in rows]
    return [len(ids) for ids in encode_ids(tokenizer, texts, add_special_tokens=False)]


def fit_prompt_length(cfg, rows: dict, tokenizer, given: int | None) -> int:
    """data.max_prompt_length for the exported prompts: the longest one unless `given`; a given
    length below it is refused, since verl drops longer prompts (filter_overlong_prompts) and
    would train on another set."""
    lengths = {split: prompt_lengths(cfg, tokenizer, r) for split, r in rows.items()}
    longest = max(max(v) for v in lengths.values())
    if given is None:
        return longest
    over = {split: sum(n > given for n in v) for split, v in lengths.items()}
    if any(over.values()):
        raise UserError(f"--max-prompt-length {given}: {over['train']} training and "
                        f"{over['test']} held-out prompts are longer (the longest {longest} "
                        f"tokens), and verl drops them (data.filter_overlong_prompts); raise it "
                        f"or leave it out")
    return given


def measured_length(cfg, rows: dict, model_path: str | None, given: int | None) -> int:
    """`fit_prompt_length` with the model's tokenizer; where it cannot be loaded here (a hub
    model not cached, no network), a given length is taken unchecked, with one line saying so."""
    from rlscale.models import load_tokenizer

    try:
        tok = load_tokenizer(model_path or cfg.model)
    except UserError as e:
        if given is None:
            raise UserError(f"{e}; --write-data measures the prompts in its tokens for verl's "
                            f"data.max_prompt_length: give --max-prompt-length to skip") from None
        print(f"warning: --max-prompt-length {given} not checked against the prompts ({e})",
              file=sys.stderr)
        return given
    return fit_prompt_length(cfg, rows, tok, given)
