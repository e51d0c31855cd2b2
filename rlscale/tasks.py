"""Tasks: math problems (question, answer, optional chain of thought) and their prompts.

Sources: GSM8K-format and MATH-format files (JSONL / JSON / Parquet), HF `datasets` names when
online, reasoning-gym's `gsm_symbolic`, and an own arithmetic generator sized for micro models
(rlscale.arith: chains with a difficulty level per problem). The held-out split never overlaps training: questions are compared after
`normalize_question`, and for procedural sources a question belongs to the test side iff a
stable hash of its normalised text says so, so no seed or size of any train stream (GRPO prompts,
pre-training corpus) can ever produce a test question. The test split depends on the spec and
n_test only (a fixed held-out set; docs/architecture.md); `seed` draws and orders the train split.
A procedural spec with `heldout=validation` ("arith:ladder,heldout=validation") keeps the same
train split and draws its held-out side as the test split is drawn, from another stream: a
validation set for choosing settings without looking at the test.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from rlscale.arith import arith_problems, parse_arith_spec
from rlscale.errors import UserError
from rlscale.files import parse_json, read_json
from rlscale.problem import Problem
from rlscale.procs import gc_paused
from rlscale.rewards import last_boxed

STOP_STRINGS = ("\n\nQuestion:", "Question:")  # a base model would go on with a new question
TEST_BUCKETS = 8  # procedural tasks: 1/8 of the question space is reserved for the test side
DEFAULT_N_TEST = 500
DEFAULT_N_TRAIN = {"arith": 20000, "gsm_symbolic": 5000}
PROCEDURAL_BLOCK = 2048
# procedural held-out streams: the test split, and the one a spec's `heldout=validation` puts in
# its place (drawn exactly as a test split of the same size, for choosing settings without
# looking at the test; it may share a few frequent problems with the test split)
HELDOUT_STREAMS = {"test": 10**6 + 7, "validation": 10**6 + 11}


@dataclass
class Task:
    name: str
    train: list[Problem]
    test: list[Problem]
    answer_format: Literal["gsm", "boxed"] = "gsm"


# ---------------------------------------------------------------- normalisation and splitting
def normalize_question(q: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed: the key for deduplication."""
    return " ".join(re.sub(r"[^\w\s]", " ", q.lower()).split())


def _qhash(q: str) -> int:
    # stable across processes (Python's hash() is salted)
    return int.from_bytes(hashlib.blake2b(normalize_question(q).encode(), digest_size=8).digest(),
                          "big")


def _is_test_side(q: str) -> bool:
    return _qhash(q) % TEST_BUCKETS == 0


def _dedupe(problems: Iterable[Problem], exclude: set[str] = frozenset()) -> list[Problem]:
    seen, out = set(exclude), []
    for p in problems:
        key = normalize_question(p.question)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def split_train_test(problems: list[Problem], n_test: int | None, seed: int = 0,
                     test: list[Problem] | None = None) -> tuple[list[Problem], list[Problem]]:
    """(train, test) with no normalised question in both.

    Without a given test list, the test split is the first n_test distinct problems in stable
    hash order: independent of seed and of the file's order, and a prefix of any larger split.
    Train is every other distinct problem, shuffled by seed.
    """
    if test is None:
        pool = sorted(_dedupe(problems), key=lambda p: _qhash(p.question))
        n = min(1000, max(1, len(pool) // 5)) if n_test is None else n_test
        test = pool[:n]
    else:
        test = _dedupe(test)
        if n_test is not None:
            test = sorted(test, key=lambda p: _qhash(p.question))[:n_test]
    train = _dedupe(problems, exclude={normalize_question(p.question) for p in test})
    random.Random(seed).shuffle(train)
    return train, test


# ---------------------------------------------------------------- reasoning-gym gsm_symbolic
_RG_SUFFIX = " Give the result as your final answer. Do not include units."


def gsm_symbolic_problems(n: int, seed: int) -> list[Problem]:
    """n reasoning-gym gsm_symbolic problems with their "#### N" chains of thought."""
    import reasoning_gym

    out = []
    for item in reasoning_gym.create_dataset("gsm_symbolic", size=n, seed=seed):
        question = item["question"].removesuffix(_RG_SUFFIX).strip()
        answer = str(item["answer"]).strip()
        cot = (item.get("metadata") or {}).get("answer_cot")
        solution = None
        if cot:
            # a few templates end in "#### 36.0" for answer 36: one canonical final line
            body = re.sub(r"\n?####[^\n]*\s*$", "", cot.strip())
            solution = f"{body}\n#### {answer}"
        out.append(Problem(question, answer, solution))
    return out


def _procedural(gen, n_train: int, n_test: int, seed: int, name: str,
                heldout: str = "test") -> tuple[list, list]:
    """Fill the held-out side from a fixed stream (HELDOUT_STREAMS[heldout]) and the train side
    from the seeded stream.

    A stream is fixed-size blocks drawn with seeds (stream, block index), so a split of size n
    is a prefix of any larger one (growing --n-problems keeps the first problems)."""

    def fill(stream_seed: int, want: int, test_side: bool) -> list[Problem]:
        out, seen, block, stalls = [], set(), 0, 0
        while len(out) < want:
            before = len(out)
            for p in gen(PROCEDURAL_BLOCK, stream_seed * 100003 + block):
                key = normalize_question(p.question)
                if key not in seen and _is_test_side(p.question) == test_side:
                    seen.add(key)
                    out.append(p)
                    if len(out) == want:
                        break
            block += 1
            stalls = stalls + 1 if len(out) - before < PROCEDURAL_BLOCK // 1000 else 0
            if stalls >= 3 and len(out) < want:
                raise UserError(f"task {name!r}: cannot draw {want} distinct problems; the "
                                f"problem space is too small (raise max_value or the terms)")
        return out

    test = fill(HELDOUT_STREAMS[heldout], n_test, True)  # fixed: it does not depend on seed
    return fill(seed, n_train, False), test


def heldout_option(spec: str) -> tuple[str, str]:
    """('arith:ladder', 'validation') from 'arith:ladder,heldout=validation': the generator's
    spec without the option, and which held-out stream to draw (default the test split's)."""
    head, _, rest = spec.partition(":")
    items = [s.strip() for s in rest.split(",") if s.strip()]
    picked = [i for i in items if i.replace(" ", "").startswith("heldout=")]
    heldout = picked[-1].split("=", 1)[1].strip() if picked else "test"
    if heldout not in HELDOUT_STREAMS:
        raise UserError(f"task {spec!r}: heldout must be one of {', '.join(HELDOUT_STREAMS)}, "
                        f"got {heldout!r}")
    rest = ",".join(i for i in items if i not in picked)
    return (f"{head}:{rest}" if rest else head), heldout


# ---------------------------------------------------------------- files and HF datasets
def _record_to_problem(rec, where: str) -> tuple[Problem, str]:
    """(Problem, "gsm"|"boxed") from one record; UserError naming `where` if malformed."""
    if not isinstance(rec, dict):
        raise UserError(f"{where}: expected an object, got {type(rec).__name__}")

    def text(key: str) -> str:
        v = rec.get(key)
        if isinstance(v, bool) or not isinstance(v, (str, int, float)) or not str(v).strip():
            raise UserError(f"{where}: field {key!r} must be a non-empty string")
        return str(v).strip()

    level = rec.get("level")
    if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
        raise UserError(f"{where}: field 'level' must be an integer or null, got {level!r}")
    if "question" in rec:
        q, a = text("question"), text("answer")
        if "####" in a:  # GSM8K: chain of thought with a final "#### N" line
            final = a.rsplit("####", 1)[1].strip()
            if not final:
                raise UserError(f"{where}: field 'answer' has nothing after '####'")
            return Problem(q, final.replace(",", ""), a, level), "gsm"
        sol = rec.get("solution")
        return Problem(q, a, str(sol) if sol else None, level), "gsm"
    if "problem" in rec:
        q, sol = text("problem"), text("solution")
        a = str(rec["answer"]).strip() if rec.get("answer") not in (None, "") else None
        a = a or last_boxed(sol)
        if not a:
            raise UserError(f"{where}: field 'solution' has no \\boxed{{...}} answer")
        return Problem(q, a, sol, level), "boxed"
    raise UserError(f"{where}: expected fields question/answer (GSM8K) or problem/solution "
                    f"(MATH), got {sorted(rec)[:6]}")


def read_problems(path: str | Path) -> tuple[list[Problem], str]:
    """Problems of a .jsonl / .json / .parquet file and its answer format."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises many types for a bad file
            raise UserError(f"{path}: not a readable Parquet file ({type(e).__name__})") from None
        items = [(f"{path}:row {i + 1}", r) for i, r in enumerate(rows)]
    elif suffix in (".jsonl", ".json"):
        # depth- and size-limited JSON, errors naming file and line (rlscale.files)
        raw = path.read_text(encoding="utf-8", errors="replace")
        if suffix == ".json" and raw.lstrip().startswith("["):
            items = [(f"{path}:item {i + 1}", r) for i, r in enumerate(read_json(path))]
        else:
            with gc_paused():  # one dict per line, none of them cyclic
                items = [(f"{path}:{i + 1}", parse_json(line, f"{path}:{i + 1}"))
                         for i, line in enumerate(raw.split("\n")) if line.strip()]
    else:
        raise UserError(f"{path}: unknown data file type {suffix!r}; use .jsonl, .json or "
                        f".parquet")
    if not items:
        raise UserError(f"{path}: no problems in file")
    problems, formats = [], set()
    for where, rec in items:
        p, fmt = _record_to_problem(rec, where)
        if formats and fmt not in formats:
            raise UserError(f"{where}: mixes MATH and GSM8K records in one file")
        formats.add(fmt)
        problems.append(p)
    return problems, formats.pop()


def _hf_task(name: str, seed: int, n_test: int | None) -> Task:
    try:
        import datasets
    except ImportError:
        raise UserError(f"task {name!r}: the HF `datasets` package is not installed; install it "
                        f"(pip install datasets) or pass a local .jsonl/.parquet file") from None
    repo, config = {"gsm8k": ("openai/gsm8k", "main"),
                    "math": ("DigitalLearningGmbH/MATH-lighteval", "default")}[name]
    try:
        ds = datasets.load_dataset(repo, config)
    except Exception as e:  # offline, gated, renamed, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"task {name!r}: cannot load {repo} ({first}); pass a local file "
                        f"instead") from None
    splits, fmt = {}, "gsm"
    for split in ("train", "test"):
        splits[split] = []
        for i, rec in enumerate(ds[split]):
            p, fmt = _record_to_problem(dict(rec), f"{repo}:{split}:row {i + 1}")
            splits[split].append(p)
    train, test = split_train_test(splits["train"], n_test, seed, test=splits["test"])
    return Task(name, train, test, fmt)


def load_task(spec: str, seed: int = 0, n_test: int | None = None,
              n_train: int | None = None) -> Task:
    """A Task from a spec: gsm8k | math | gsm_symbolic | arith[:preset,key=value] | a file
    (.jsonl/.json/.parquet) | a directory holding train.* and test.* files.

    n_test: held-out size (procedural default 500; a single file: 20%, at most 1000; official
    test splits: all). n_train: procedural train size (arith 20000, gsm_symbolic 5000).
    """
    spec = str(spec).strip()
    if n_test is not None and n_test < 1:
        raise UserError(f"n_test must be >= 1, got {n_test}")
    head = spec.split(":", 1)[0]
    if head in ("arith", "gsm_symbolic") and not Path(spec).exists():
        gen_spec, heldout = heldout_option(spec)
        if head == "arith":
            cfg = parse_arith_spec(gen_spec)
            gen = lambda n, s: arith_problems(n, s, cfg)  # noqa: E731
        else:
            if gen_spec != "gsm_symbolic":
                raise UserError(f"task {spec!r}: gsm_symbolic takes no options but heldout")
            gen = gsm_symbolic_problems
        n_tr = DEFAULT_N_TRAIN[head] if n_train is None else n_train
        train, test = _procedural(gen, n_tr, n_test or DEFAULT_N_TEST, seed, spec, heldout)
        return Task(spec, train, test, "gsm")
    if spec in ("gsm8k", "math") and not Path(spec).exists():
        return _hf_task(spec, seed, n_test)
    path = Path(spec).expanduser()
    if path.is_dir():
        found = {}
        for split in ("train", "test"):
            cands = [path / f"{split}{ext}" for ext in (".jsonl", ".json", ".parquet")]
            hits = [c for c in cands if c.is_file()]
            if not hits:
                raise UserError(f"{path}: task directory needs {split}.jsonl, {split}.json or "
                                f"{split}.parquet")
            found[split] = read_problems(hits[0])
        if found["train"][1] != found["test"][1]:
            raise UserError(f"{path}: train and test files use different formats")
        train, test = split_train_test(found["train"][0], n_test, seed, test=found["test"][0])
        return Task(path.name, train, test, found["train"][1])
    if path.suffix.lower() in (".jsonl", ".json", ".parquet") or path.exists():
        problems, fmt = read_problems(path)
        train, test = split_train_test(problems, n_test, seed)
        if not train:
            raise UserError(f"{path}: too few distinct problems for a train and a test split")
        return Task(path.stem, train, test, fmt)
    raise UserError(f"unknown task {spec!r}; use gsm8k, math, gsm_symbolic, arith, "
                    f"arith:<easy|medium|hard|ladder>, or a .jsonl/.json/.parquet file")


# ---------------------------------------------------------------- prompts
def format_solution(problem: Problem) -> str:
    """The target continuation of a prompt: " <chain of thought ending in #### N>"."""
    return " " + (problem.solution.strip() if problem.solution else f"#### {problem.answer}")


def format_prompt(problem: Problem, exemplars: Iterable[Problem] = ()) -> str:
    """lm-eval GSM8K style: exemplars "Question: q\\nAnswer: solution\\n\\n", then the question."""
    shots = "".join(f"Question: {e.question}\nAnswer:{format_solution(e)}\n\n" for e in exemplars)
    return f"{shots}Question: {problem.question}\nAnswer:"


def prompt_messages(problem: Problem, exemplars: Iterable[Problem] = (),
                    multiturn: bool = False, system: str = "") -> list[dict]:
    """The prompt as chat messages: one user message holding `format_prompt`'s text, or with
    `multiturn` each exemplar as a user turn (its question) and an assistant turn (its
    solution), then the question: lm-eval's `fewshot_as_multiturn` (its GSM8K doc_to_text in
    the user turns, the target without the delimiter in the assistant's); a `system` message
    first where one is given (lm-eval's system_instruction)."""
    head = [{"role": "system", "content": system}] if system else []
    if not multiturn:
        return head + [{"role": "user", "content": format_prompt(problem, exemplars)}]
    turns = head
    for e in exemplars:
        turns += [{"role": "user", "content": format_prompt(e)},
                  {"role": "assistant", "content": format_solution(e)[1:]}]
    return turns + [{"role": "user", "content": format_prompt(problem)}]


def fewshot_exemplars(train: list[Problem], k: int, seed: int) -> list[Problem]:
    """k exemplars drawn (seeded) from the train split; never pass the test split here."""
    if k < 0 or k > len(train):
        raise UserError(f"shots must be in 0..{len(train)} (train size), got {k}")
    return random.Random(seed).sample(train, k)


def corpus_texts(n: int, seed: int = 0, task_spec: str = "arith") -> list[str]:
    """n documents "Question: q\\nAnswer: solution" from the task's train side (never test),
    for tokenizer training and pre-training; a small file's train split is cycled."""
    task = load_task(task_spec, seed=seed, n_train=n)
    train = task.train
    return [format_prompt(train[i % len(train)]) + format_solution(train[i % len(train)])
            for i in range(n)]
