"""The pre-training corpus of a micro rung: the task's train documents in their variants.

Two corpus knobs make the base model's competence "real but unreliable" in a way RL can fix
(see docs/study.md): `direct_frac` of the documents give the bare answer "#### N" without the
chain of thought, and `slip_frac` of the chains make one arithmetic slip in their last step
(the last result and the final answer are off by 1 or 2), as web-scale corpora hold solutions
that skip steps or contain errors. `plain_frac` of the documents end in "The answer is N."
instead of "#### N", so a base model does not always write the marker a strict reward needs.

    Corpus(problems, tokenizer, cfg).batch(step) -> (inputs, targets, mask) [rows, length]
    corpus_tokenizer(problems) -> the micro tokenizer trained on the first train documents
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

from rlscale.errors import UserError

if TYPE_CHECKING:  # only for annotations: rlscale.pretrain imports this module
    from rlscale.pretrain import PretrainConfig


_LAST_EQ = re.compile(r"=\s*(-?\d+)\s*\n####\s*(-?\d+)\s*$")


def slipped(solution: str, delta: int) -> str | None:
    """The solution with its last result and final answer both moved by delta, or None when
    the solution does not end in "... = r\\n#### r" (nothing to slip consistently)."""
    m = _LAST_EQ.search(solution.strip())
    if not m or m.group(1) != m.group(2):
        return None
    wrong = int(m.group(1)) + delta
    return solution.strip()[: m.start()] + f"= {wrong}\n#### {wrong}"


def plain_ending(solution: str) -> str:
    """The solution with its final "#### N" line written as prose, "The answer is N.": the
    ending a strict reward does not accept, so RL with it has a format to teach."""
    body, sep, final = solution.rstrip().rpartition("####")
    return f"{body}The answer is {final.strip()}." if sep else solution


class Corpus:
    """Tokenized documents of the train split, four variants each: the worked solution, the
    bare answer, (where the chain allows) a slipped chain, and the worked solution ending in
    prose instead of "#### N"; `batch(step)` packs rows."""

    def __init__(self, problems, tokenizer, cfg: PretrainConfig):
        from rlscale.arith import question_style, story_start
        from rlscale.models.tokenizer import encode_ids
        from rlscale.tasks import format_prompt, format_solution

        rng = random.Random(f"slip|{cfg.seed}")
        prompts = [format_prompt(p) for p in problems]
        sols = [format_solution(p) for p in problems]
        direct = [f" #### {p.answer}" for p in problems]
        slips = [slipped(s, rng.choice((-2, -1, 1, 2))) for s in sols]
        enc = lambda texts: encode_ids(tokenizer, texts, add_special_tokens=False)  # noqa: E731
        self.prompt = enc(prompts)
        self.variants = {"cot": enc(sols), "direct": enc(direct),
                         "plain": enc([plain_ending(s) for s in sols])}
        self.slip = [None if s is None else ids for s, ids in
                     zip(slips, enc([s if s is not None else "" for s in slips]))]
        # the documents whose style may answer bare (all of them unless direct_style is set)
        self.direct_ok = [not cfg.direct_style or question_style(p.question) == cfg.direct_style
                          for p in problems]
        # the curriculum's documents: problems of a known level <= easy_max_level
        self.easy = [i for i, p in enumerate(problems)
                     if p.level is not None and p.level <= cfg.easy_max_level]
        if cfg.easy_first and not self.easy:
            raise UserError(f"--easy-first: no train problem has a level <= "
                            f"{cfg.easy_max_level} (task {cfg.task!r})")
        # the multi-digit phase's documents: stories starting from a number of >= 2 digits
        self.multi_digit = [i for i, p in enumerate(problems)
                            if (story_start(p.question) or 0) >= 10] if cfg.multi_digit_first \
            else []
        if cfg.multi_digit_first and not self.multi_digit:
            raise UserError(f"--multi-digit-first: no train problem is a story starting from a "
                            f"number of two or more digits (task {cfg.task!r})")
        # echo documents: the question, a line break, the question again (only built if used)
        self.echo = enc([f"{p.question}\n{p.question}" for p in problems]) if cfg.echo_frac \
            else []
        self.eos = tokenizer.eos_token_id
        self.blank = enc(["\n\n"])[0]
        self.cfg = cfg

    def _solution(self, i: int, rng: random.Random) -> list[int]:
        """Document i's answer: bare, slipped, with a plain ending, or the worked chain."""
        u, cfg = rng.random(), self.cfg
        direct = cfg.direct_frac
        if cfg.direct_style:  # bare answers per question style: a draw of their own
            if u < (direct if self.direct_ok[i] else cfg.direct_frac_other):
                return self.variants["direct"][i]
            u, direct = rng.random(), 0.0
        if u < direct:
            return self.variants["direct"][i]
        if u < direct + cfg.slip_frac:
            return self.slip[i] if self.slip[i] is not None else self.variants["cot"][i]
        if u < direct + cfg.slip_frac + cfg.plain_frac:
            return self.variants["plain"][i]
        return self.variants["cot"][i]

    def document(self, i: int, rng: random.Random) -> tuple[list[int], list[int]]:
        """(token ids, loss mask) of document i in a variant drawn by rng."""
        cfg = self.cfg
        if cfg.echo_frac and rng.random() < cfg.echo_frac:  # no draw at 0: the stream stays
            return self.echo[i] + [self.eos], [1] * (len(self.echo[i]) + 1)
        sol = self._solution(i, rng)
        joined = cfg.blank_join_frac and rng.random() < cfg.blank_join_frac  # no draw at 0
        end = self.blank if joined else [self.eos]
        ids = self.prompt[i] + sol + end
        on_prompt = 1 if cfg.loss_on == "all" else 0
        return ids, [on_prompt] * len(self.prompt[i]) + [1] * (len(sol) + len(end))

    def row_shape(self, step: int) -> tuple[int, int]:
        """(rows, row length) of a step: short rows first (cheaper attention, fewer documents
        per row), then seq_len rows for the last long_frac of the steps, so that the model
        learns the positions of few-shot prompts (as LLMs extend their context late in
        pre-training); every step holds batch_size x seq_len tokens."""
        cfg = self.cfg
        short = cfg.short_seq_len
        if short and short != cfg.seq_len and step < cfg.steps() - round(cfg.long_frac *
                                                                          cfg.steps()):
            return cfg.batch_size * (cfg.seq_len // short), short
        return cfg.batch_size, cfg.seq_len

    def _first_pool(self, step: int) -> list[int] | None:
        """The documents a step draws from while a first phase lasts (easy_first's levels or
        multi_digit_first's stories: the phase's steps come first), else None (all)."""
        cfg = self.cfg
        if step < round(cfg.easy_first * cfg.steps()):
            return self.easy
        if step < round(cfg.multi_digit_first * cfg.steps()):
            return self.multi_digit
        return None

    def batch(self, step: int):
        """(inputs, targets, mask) [rows, length] for a step (`row_shape`), seeded by
        (seed, step)."""
        import torch

        cfg = self.cfg
        n_rows, length = self.row_shape(step)
        rng = random.Random(cfg.seed * 1_000_003 + step)
        pool = self._first_pool(step)
        rows, masks = [], []
        for _ in range(n_rows):
            ids, mask = [], []
            while len(ids) < length + 1:  # whole documents from the row's start
                i = pool[rng.randrange(len(pool))] if pool else rng.randrange(len(self.prompt))
                d, m = self.document(i, rng)
                ids += d
                mask += m
            rows.append(ids[: length + 1])
            masks.append(mask[1 : length + 1])
        x = torch.tensor(rows)
        return x[:, :-1], x[:, 1:], torch.tensor(masks, dtype=torch.float32)


def corpus_tokenizer(problems, vocab_size: int = 512, n_docs: int = 4000,
                     numbers: str = "digits"):
    """The micro tokenizer trained on the first n_docs train documents (cached on disk)."""
    from rlscale.models import micro_tokenizer
    from rlscale.tasks import format_prompt, format_solution

    docs = [format_prompt(p) + format_solution(p) for p in problems[:n_docs]]
    return micro_tokenizer(vocab_size, corpus=docs, numbers=numbers)
