"""The micro ladder's tokenizer: a byte-level BPE trained locally on the task corpus.

Byte-level, so any text (GSM8K, MATH, model output) encodes without unknown tokens; digits are
split into single tokens before BPE so that every number is a sequence of digit tokens (micro
models learn arithmetic much more easily when "123" is always 1, 2, 3). Where a number follows
a space, `numbers` decides what the space becomes: "digits" (the default, Qwen's way) keeps it
a token of its own, so every number in a sentence is preceded by the same token " ";
"spaced" joins it to the first digit (" 1", "2", "3", GPT-2's way), so the token before a
number's first digit is the word before it ("loses", "+"). That is the key an induction head
matches on to copy an operand out of a question (docs/study.md, session 5). Training is
deterministic; the result is cached on disk under a key that hashes every setting (and the
corpus itself), so repeated use is a file read.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from rlscale.files import atomic_write_text
from rlscale.procs import gc_paused

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
# bump when the training recipe changes, so old cache entries are never reused
TOKENIZER_VERSION = 1
DEFAULT_VOCAB_SIZE = 512
DEFAULT_CORPUS_DOCS = 4000
NUMBERS = ("digits", "spaced")  # what a space before a number becomes (module docstring)


def encode_ids(tokenizer, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
    """`tokenizer(texts)["input_ids"]`: the same ids, without the attention masks and type ids
    a call builds by default (a pre-training corpus of 20,000 solutions: 1.26 -> 1.04 s)."""
    with gc_paused():  # 20,000 id lists: full collections that free nothing (docs/benchmarks.md)
        return tokenizer(list(texts), add_special_tokens=add_special_tokens,
                         return_attention_mask=False, return_token_type_ids=False)["input_ids"]


# apply_chat_template's own arguments, which rlscale sets: not a template's variables
RESERVED_TEMPLATE_KWARGS = ("conversation", "tokenize", "add_generation_prompt",
                            "continue_final_message", "return_dict", "tools", "documents")


def template_kwargs(text: str, flag: str = "--chat-template-kwargs") -> dict:
    """The chat template's extra variables from their JSON object text ("" -> {}), e.g.
    '{"enable_thinking": false}' for Qwen3's template; as TRL's chat_template_kwargs, verl's
    data.apply_chat_template_kwargs and lm-eval's chat_template_args. Values are JSON scalars
    (a verl override is one per key). A bad one: UserError naming the flag."""
    import json

    from rlscale.errors import UserError

    if not text:
        return {}
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{flag}: not JSON ({e.msg}): {text[:80]!r}") from None
    if not isinstance(d, dict):
        raise UserError(f"{flag}: expected a JSON object such as "
                        f"'{{\"enable_thinking\": false}}', got {text[:80]!r}")
    for k, v in d.items():
        if not k.isidentifier():
            raise UserError(f"{flag}: {k!r} is not a template variable name")
        if k in RESERVED_TEMPLATE_KWARGS:
            raise UserError(f"{flag}: {k!r} is set by rlscale, not a template variable")
        if not isinstance(v, (bool, int, float, str)):
            raise UserError(f"{flag}: {k!r}: values are true/false, numbers or strings")
    return d


def canonical_template_kwargs(text: str, flag: str = "--chat-template-kwargs") -> str:
    """`template_kwargs`' JSON text with sorted keys and no spaces ("" for none), so one setting
    has one text (a run id, an eval's pinned settings)."""
    import json

    d = template_kwargs(text, flag)
    return json.dumps(d, sort_keys=True, separators=(",", ":")) if d else ""


def chat_prompts(tokenizer, conversations: Iterable[str | list[dict]],
                 **template_vars) -> list[str]:
    """Each conversation in the tokenizer's chat template with the assistant's generation
    prompt: what instruct models expect, and what verl renders from a prompt row. A text is one
    user message; a list is the messages (`tasks.prompt_messages`). A BOS the template writes
    and the tokenizer adds by itself is left to the tokenizer, so `encode_ids` of a result
    gives the template's ids with one BOS. `template_vars` go to the template (`template_kwargs`).
    No conversations: only the check that the tokenizer has a template (UserError, one line)."""
    from rlscale.errors import UserError

    if not getattr(tokenizer, "chat_template", None):
        raise UserError("--chat: the model's tokenizer has no chat template (a base model or a "
                        "micro rung: leave --chat off for raw 'Question: ... Answer:' prompts)")
    out = [tokenizer.apply_chat_template(
        [{"role": "user", "content": c}] if isinstance(c, str) else list(c), tokenize=False,
        add_generation_prompt=True, **template_vars) for c in conversations]
    bos = getattr(tokenizer, "bos_token", None)
    if out and bos and encode_ids(tokenizer, [""])[0][:1] == [tokenizer.bos_token_id]:
        out = [x[len(bos):] if x.startswith(bos) else x for x in out]
    return out


@dataclass(frozen=True)
class ChatStyle:
    """How a prompt sits in the model's chat template (--chat): exemplars inside the one user
    message or as turns of their own (`multiturn`), a system message first (`system`), the
    template's extra variables (`template_vars`, as (name, value) pairs)."""

    multiturn: bool = False
    system: str = ""
    template_vars: tuple = ()

    def messages(self, problem, exemplars) -> list[dict]:
        from rlscale.tasks import prompt_messages

        return prompt_messages(problem, exemplars, self.multiturn, self.system)


def chat_style(cfg) -> ChatStyle | None:
    """The ChatStyle of a TrainConfig or EvalConfig (their chat fields share names); None for
    raw prompts."""
    if not cfg.chat:
        return None
    return ChatStyle(cfg.fewshot_as_multiturn, cfg.system_prompt,
                     tuple(template_kwargs(cfg.chat_template_kwargs).items()))


def chat_settings_error(cfg) -> tuple[str, str] | None:
    """(field, why) for the first chat setting given without --chat (raw prompts have no roles,
    turns or template), else None; a malformed chat_template_kwargs raises UserError."""
    template_kwargs(cfg.chat_template_kwargs)
    if not cfg.chat:
        for name, on in (("fewshot_as_multiturn", cfg.fewshot_as_multiturn),
                         ("system_prompt", cfg.system_prompt),
                         ("chat_template_kwargs", cfg.chat_template_kwargs)):
            if on:
                return name, "needs --chat (raw prompts have no roles, turns or template)"
    return None


def task_prompts(tokenizer, problems, exemplars, style: ChatStyle | None = None) -> list[str]:
    """The prompt texts of `problems`, the i-th with exemplars[i] (from the train split): raw
    lm-eval GSM8K text (`tasks.format_prompt`), or with a ChatStyle in the tokenizer's chat
    template (`ChatStyle.messages`: lm-eval's --apply_chat_template, fewshot_as_multiturn off
    or on, system_instruction). What training and evaluation feed the model; the verl export
    writes the same messages for verl to render."""
    from rlscale.tasks import format_prompt

    if style is None:
        return [format_prompt(p, e) for p, e in zip(problems, exemplars, strict=True)]
    return chat_prompts(tokenizer, [style.messages(p, e)
                                    for p, e in zip(problems, exemplars, strict=True)],
                        **dict(style.template_vars))


def batch_decoder(tokenizer) -> Callable[[list[list[int]]], list[str]]:
    """A function that decodes a batch of id lists as `tokenizer.batch_decode(ids,
    skip_special_tokens=True)` does. For a fast tokenizer that cleans up no spaces (the micro
    tokenizer, Qwen's) transformers' decode is the Rust backend's decode behind two element-wise
    conversions of the lists; the stop-string check decodes every live row at every step, so
    there the backend is called directly (a small gain: up to 1.15x in CPU time on the 20k
    rung's held-out eval, benchmarks/stop_check.py). tests/test_rollout.py checks that both give
    the same texts."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "decode_batch") and getattr(
            tokenizer, "clean_up_tokenization_spaces", True) is False:
        return lambda seqs: backend.decode_batch(seqs, skip_special_tokens=True)
    return lambda seqs: tokenizer.batch_decode(seqs, skip_special_tokens=True)


_STOP_ENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> {chars: mask}


def stop_end_tokens(tokenizer, stops: tuple[str, ...]):
    """A bool tensor over the tokenizer's ids: True where a token's own text holds the last
    character of some stop string; None where that test is not exact for this tokenizer.

    A stop string can first appear in a row's decoded tail only at a step whose new token
    carries the string's last character: in a byte-level decode (`batch_decoder`'s backend
    path) an ASCII byte always decodes to itself whatever surrounds it, so an occurrence that
    ends in earlier tokens' bytes was already in the previous step's tail, whose check found
    none; special tokens add no text. So the stop-string check needs to decode only the rows
    whose new token is marked (the same hits, the same texts: tests/test_rollout.py). Exact
    for ASCII last characters and a ByteLevel decoder without cleanup; None otherwise (every
    live row is decoded, as before)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (not stops or any(not s or not s[-1].isascii() for s in stops) or backend is None
            or type(backend.decoder).__name__ != "ByteLevel"
            or getattr(tokenizer, "clean_up_tokenization_spaces", True) is not False):
        return None
    key = "".join(sorted({s[-1] for s in stops}))
    try:
        held = _STOP_ENDS.setdefault(tokenizer, {})
    except TypeError:  # not weakly referable: built per call (one batched decode)
        held = {}
    if key not in held:
        import torch

        texts = batch_decoder(tokenizer)([[i] for i in range(len(tokenizer))])
        held[key] = torch.tensor([any(c in t for c in key) for t in texts], dtype=torch.bool)
    return held[key]


def cache_dir() -> Path:
    """$RLSCALE_CACHE, else ~/.cache/rlscale."""
    env = os.environ.get("RLSCALE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "rlscale"


def _default_corpus(n_docs: int, seed: int, task_spec: str) -> list[str]:
    from rlscale.tasks import corpus_texts  # late import: tasks pulls in reasoning_gym

    return list(corpus_texts(n_docs, seed, task_spec=task_spec))


def train_bpe_json(texts: Iterable[str], vocab_size: int, numbers: str = "digits") -> str:
    """Train the byte-level BPE on texts; returns the `tokenizers` JSON (deterministic)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    if numbers not in NUMBERS:
        raise ValueError(f"numbers: {numbers!r}: choose one of {', '.join(NUMBERS)}")
    split = (pre_tokenizers.Digits(individual_digits=True) if numbers == "digits" else
             pre_tokenizers.Split(Regex(r" ?[0-9]"), behavior="isolated"))  # " 1", "2", "3"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing unknown
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok.to_str()


def _wrap(tokenizer_json_path: Path):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json_path), eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )
    tok.padding_side = "left"  # decoder-only generation pads on the left
    return tok


def micro_tokenizer(
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    corpus: Iterable[str] | None = None,
    n_docs: int = DEFAULT_CORPUS_DOCS,
    seed: int = 0,
    task_spec: str = "arith",
    cache: Path | str | None = None,
    numbers: str = "digits",
):
    """The micro tokenizer as a `PreTrainedTokenizerFast` (eos `<|endoftext|>`, pad `<|pad|>`).

    numbers: "digits" or "spaced", what a space before a number becomes (module docstring).

    corpus: training texts; default `rlscale.tasks.corpus_texts(n_docs, seed, task_spec)`.
    The trained tokenizer is cached under `cache` (default `cache_dir()`), written atomically,
    keyed by a hash of the settings (and of the corpus text when one is given; of the rlscale
    version for the default corpus), so a second call is a file read.
    """
    h = hashlib.sha256(f"v{TOKENIZER_VERSION}|{vocab_size}|".encode())
    if numbers != "digits":  # the default's keys are those of earlier versions: caches stay
        h.update(f"numbers={numbers}|".encode())
    if corpus is None:  # keyed by the settings: a cached tokenizer needs no corpus at all
        from rlscale import __version__

        h.update(f"default|{n_docs}|{seed}|{task_spec}|{__version__}".encode())
        texts = None
    else:
        texts = list(corpus)
        for t in texts:
            h.update(t.encode("utf-8"))
            h.update(b"\x00")
    path = Path(cache or cache_dir()) / "tokenizers" / f"bpe-{h.hexdigest()[:16]}.json"
    if not path.is_file():
        if texts is None:
            texts = _default_corpus(n_docs, seed, task_spec)
        atomic_write_text(path, train_bpe_json(texts, vocab_size, numbers))
    return _wrap(path)
