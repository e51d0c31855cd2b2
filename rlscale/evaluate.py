"""Evaluation: k-shot accuracy per answer check, pass@k, test loss = 1 - pass@1, clipped share.

`rlscale eval` writes one JSONL line per (shots, problem) as it goes (prompt, completions,
scores per check, clipped flags), so an interrupted eval resumes where it stopped and any metric
can be recomputed: summary.json is exactly `summarize(read_jsonl(completions.jsonl))` plus the
run's settings (`summarize`, pass@k and the checks' scores live in rlscale.eval_metrics).
`heldout_test_loss` is the same measurement, in memory and zero-shot, for the GRPO trainer's
periodic held-out eval.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rlscale.errors import UserError
from rlscale.eval_metrics import format_table, mean_se, score, summarize

GSM_CHECKS = ("strict", "flexible", "custom_flexible")
MAX_SHOTS = 5
# settings that must match to resume into an existing --out directory
PINNED = ("model", "task", "samples", "temperature", "top_p", "max_new_tokens", "seed", "chat",
          "fewshot_as_multiturn", "chat_template_kwargs", "system_prompt")
# settings added later: what an eval written before them did
PINNED_BEFORE = {"chat": False, "fewshot_as_multiturn": False, "chat_template_kwargs": "",
                 "system_prompt": ""}


def _sample(model, tokenizer, prompts, samples, params, seed, batch_size):
    """(texts per prompt, clipped flags per prompt): `samples` completions of each prompt."""
    from rlscale.rollout import generate

    flat = [p for p in prompts for _ in range(samples)]
    gen = generate(model, tokenizer, flat, params, seed=seed, batch_size=batch_size)
    texts = [gen.texts[i * samples:(i + 1) * samples] for i in range(len(prompts))]
    clipped = [gen.clipped[i * samples:(i + 1) * samples] for i in range(len(prompts))]
    return texts, clipped


def heldout_test_loss(model, tokenizer, problems, samples: int = 1, temperature: float = 0.7,
                      max_new_tokens: int = 256, reward: str = "custom_flexible", seed: int = 0,
                      batch_size: int | None = 64, exemplars=(), style=None) -> dict:
    """Held-out test loss 1 - pass@1 under `reward` (the paper: one sample at temperature 0.7),
    with its standard error over problems, accuracy per check and the clipped share. Prompts are
    zero-shot unless `exemplars` (from the train split) are given, e.g. the ones GRPO trains
    with, and in the model's chat template with a `style` (`models.tokenizer.ChatStyle`).
    The model's train/eval mode is restored afterwards."""
    import torch

    from rlscale.models.tokenizer import task_prompts
    from rlscale.rewards import REWARDS
    from rlscale.rollout import SamplingParams
    from rlscale.tasks import STOP_STRINGS

    if not problems or reward not in REWARDS:
        raise ValueError(f"heldout_test_loss needs problems and a reward in {list(REWARDS)}")
    checks = ("boxed",) if reward == "boxed" else tuple(dict.fromkeys(GSM_CHECKS + (reward,)))
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature,
                            stop_strings=STOP_STRINGS)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            prompts = task_prompts(tokenizer, problems, [exemplars] * len(problems), style)
            texts, clipped = _sample(model, tokenizer, prompts, samples, params, seed, batch_size)
    finally:
        model.train(was_training)
    per_check, right = {c: [] for c in checks}, {c: [] for c in checks}
    for p, t in zip(problems, texts):
        for c, s in score(t, p.answer, checks).items():
            per_check[c].append(sum(s) / samples)
            right[c].append(int(sum(s)))
    pass1, se = mean_se(per_check[reward])
    flags = [x for row in clipped for x in row]
    # per-problem counts of right samples (reward check and custom_flexible): two runs scored on
    # the same problems are compared on their per-problem differences (findings' paired SEs)
    kept = dict.fromkeys((reward, "custom_flexible") if "custom_flexible" in checks else (reward,))
    return {"test_loss": 1.0 - pass1, "pass1": pass1, "se": se, "n_problems": len(problems),
            "n_samples": samples, "clipped_share": sum(flags) / len(flags),
            "accuracy": {c: sum(v) / len(v) for c, v in per_check.items()},
            "right": {c: right[c] for c in kept}}


# ---------------------------------------------------------------- the `rlscale eval` run
@dataclass
class EvalConfig:
    model: str
    task: str
    out: str
    shots: tuple[int, ...] = (0,)
    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    n_problems: int | None = None
    # (shots, n) pairs: at those shot counts only the first n of the problems, e.g. a k-shot
    # curve's interior points on fewer problems than its ends (their prefill is most of its cost)
    shot_problems: tuple[tuple[int, int], ...] = ()
    checks: tuple[str, ...] | None = None  # None: the task's (GSM: strict, flexible, custom)
    seed: int = 0
    batch_size: int = 64  # rows (problems x samples) per generate() call: the resume unit; on
    # the CPU generate() splits a call further to keep the KV cache small (rollout.auto_rows)
    device: str = "auto"
    dtype: str | None = None
    progress: bool = False
    chat: bool = False  # prompts in the model's chat template (instruct models), as GRPO's --chat
    fewshot_as_multiturn: bool = False  # with chat: exemplars as user/assistant turns (lm-eval)
    chat_template_kwargs: str = ""  # with chat: the template's variables, a JSON object
    system_prompt: str = ""  # with chat: a system message first (lm-eval's system_instruction)


def _validate(cfg: EvalConfig) -> None:
    from rlscale.models.tokenizer import chat_settings_error
    from rlscale.rewards import REWARDS

    if not cfg.shots or any(not 0 <= k <= MAX_SHOTS for k in cfg.shots):
        raise UserError(f"--shots: each shot count must be in 0..{MAX_SHOTS}, got {list(cfg.shots)}")
    for flag, value, ok in (("--samples", cfg.samples, cfg.samples >= 1),
                            ("--temperature", cfg.temperature, cfg.temperature >= 0),
                            ("--top-p", cfg.top_p, 0 < cfg.top_p <= 1),
                            ("--max-new-tokens", cfg.max_new_tokens, cfg.max_new_tokens >= 1),
                            ("--batch-size", cfg.batch_size, cfg.batch_size >= 1),
                            ("--n-problems", cfg.n_problems,
                             cfg.n_problems is None or cfg.n_problems >= 1)):
        if not ok:
            raise UserError(f"{flag}: invalid value {value!r}")
    for i, (k, n) in enumerate(cfg.shot_problems):
        if k not in cfg.shots or n < 1 or k in dict(cfg.shot_problems[:i]):
            raise UserError(f"--shot-problems: {k}:{n} needs a shot count of --shots, listed "
                            "once, and n >= 1")
    wrong = chat_settings_error(cfg)
    if wrong:
        raise UserError(f"--{wrong[0].replace('_', '-')}: {wrong[1]}")
    for c in cfg.checks or ():
        if c not in REWARDS:
            raise UserError(f"--checks: unknown check {c!r}; choose from {', '.join(REWARDS)}")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")


def _load_done(out: Path, cfg: EvalConfig, checks, task) -> list[dict]:
    """Records of an earlier run of the same eval in `out` (torn tail tolerated), rescored
    when checks were added; UserError if `out` holds an eval with other settings."""
    from rlscale.files import atomic_write_text, dumps, read_json, read_jsonl

    if (out / "config.json").is_file():
        old = read_json(out / "config.json")
        diff = [k for k in PINNED if old.get(k, PINNED_BEFORE.get(k)) != asdict(cfg)[k]]
        if diff:
            raise UserError(f"--out {out}: holds an eval with other settings ({', '.join(diff)});"
                            f" rerun with the same settings to resume, or use another --out")
    path = out / "completions.jsonl"
    if not path.is_file():
        return []
    records = read_jsonl(path, tolerate_torn_tail=True)
    rescored = False
    for r in records:
        i = int(r["index"])
        if i < len(task.test) and r["question"] != task.test[i].question:
            raise UserError(f"{path}: problem {i} differs from the task's; use another --out")
        missing = [c for c in checks if c not in r["scores"]]
        if missing:
            r["scores"].update(score(r["completions"], r["answer"], missing))
            rescored = True
    if rescored:  # keep the file the single source of the summary
        atomic_write_text(path, "".join(dumps(r) + "\n" for r in records))
    return records


def evaluate(cfg: EvalConfig, model=None, tokenizer=None) -> dict:
    """Run (or resume) an eval into cfg.out; returns the summary written to summary.json."""
    from tqdm.auto import tqdm

    from rlscale.files import JsonlWriter, atomic_write_json
    from rlscale.models.tokenizer import canonical_template_kwargs
    from rlscale.tasks import load_task

    cfg = replace(cfg, shot_problems=tuple(sorted((int(k), int(n)) for k, n in cfg.shot_problems)))
    _validate(cfg)
    cfg = replace(cfg, chat_template_kwargs=canonical_template_kwargs(cfg.chat_template_kwargs))
    # procedural train splits only serve as exemplar pools here: 2000 is plenty, and a 0-shot
    # eval needs none (the held-out side is its own stream: the same problems either way)
    task = load_task(cfg.task, seed=cfg.seed, n_test=cfg.n_problems,
                     n_train=2000 if max(cfg.shots) else 0)
    problems = task.test[: cfg.n_problems] if cfg.n_problems else task.test
    if max(cfg.shots) > len(task.train):
        raise UserError(f"--shots: {max(cfg.shots)} exemplars but the train split has "
                        f"{len(task.train)} problems")
    checks = tuple(cfg.checks or (("boxed",) if task.answer_format == "boxed" else GSM_CHECKS))
    if model is None:
        import torch

        from rlscale.models import load_model

        device = cfg.device if cfg.device != "auto" else (
            "cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer = load_model(cfg.model, device=device, dtype=cfg.dtype, seed=cfg.seed)
    if cfg.chat:  # a tokenizer without a chat template: one line, before anything is written
        from rlscale.models.tokenizer import chat_prompts

        chat_prompts(tokenizer, [])
    out = Path(cfg.out)  # every input is valid: only now may the directory appear
    records = _load_done(out, cfg, checks, task) if out.is_dir() else []
    atomic_write_json(out / "config.json", asdict(cfg))
    done = {(int(r["shots"]), int(r["index"])) for r in records}
    todo = sum(1 for k in cfg.shots for i in range(shot_count(cfg, k, len(problems)))
               if (k, i) not in done)
    bar = tqdm(total=todo, desc="eval", unit="problem", file=sys.stderr,
               disable=not (cfg.progress or sys.stderr.isatty()))
    t0 = time.time()
    with JsonlWriter(out / "completions.jsonl") as log:
        for new in _eval_chunks(cfg, task, problems, checks, done, model, tokenizer):
            log.write_many(new)
            records.extend(new)
            bar.update(len(new))
    bar.close()
    summary = {"meta": {"config": asdict(cfg), "task_name": task.name,
                        "answer_format": task.answer_format, "checks": list(checks),
                        "seconds_this_run": round(time.time() - t0, 3)},
               **summarize(records)}
    atomic_write_json(out / "summary.json", summary)
    return summary


def shot_count(cfg: EvalConfig, shots: int, n_problems: int) -> int:
    """Problems evaluated at a shot count: all, or the first n where shot_problems says n."""
    return min(n_problems, dict(cfg.shot_problems).get(shots, n_problems))


def _eval_chunks(cfg: EvalConfig, task, problems, checks, done: set, model, tokenizer):
    """Yield the completions.jsonl records of each (shots, chunk of problems) not yet `done`.
    Chunks and their seeds are fixed by the config alone, so a resumed run draws what an
    uninterrupted one would."""
    from rlscale.models.tokenizer import chat_style, task_prompts
    from rlscale.rollout import SamplingParams
    from rlscale.tasks import STOP_STRINGS, fewshot_exemplars

    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                            top_p=cfg.top_p, stop_strings=STOP_STRINGS)
    per_chunk = max(1, cfg.batch_size // cfg.samples)  # problems per generate() call
    style = chat_style(cfg)
    for shots in cfg.shots:
        n = shot_count(cfg, shots, len(problems))
        for c0 in range(0, n, per_chunk):
            idx = [i for i in range(c0, min(c0 + per_chunk, n)) if (shots, i) not in done]
            if not idx:
                continue
            # nested exemplars, whatever --shots lists: k-shot uses the first k of 5-shot's
            shown = [fewshot_exemplars(task.train, min(MAX_SHOTS, len(task.train)),
                                       seed=cfg.seed * 1_000_003 + i)[:shots] for i in idx]
            prompts = task_prompts(tokenizer, [problems[i] for i in idx], shown, style)
            seed = (cfg.seed * 1009 + shots) * 1_000_003 + c0
            # rows per forward batch: generate's own (all of the chunk's on a GPU; on the CPU a
            # KV-cache budget's worth, rollout.auto_rows), never above batch_size
            texts, clipped = _sample(model, tokenizer, prompts, cfg.samples, params, seed, None)
            yield [{"shots": shots, "index": i, "question": problems[i].question,
                    "answer": problems[i].answer, "level": problems[i].level,
                    "prompt": p, "completions": t,
                    "scores": score(t, problems[i].answer, checks), "clipped": cl}
                   for i, p, t, cl in zip(idx, prompts, texts, clipped)]


# ---------------------------------------------------------------- CLI
def _shot_problems(s: str) -> tuple[tuple[int, int], ...]:
    import argparse

    try:
        return tuple((int(k), int(n)) for k, n in (x.split(":") for x in s.split(",") if x.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SHOTS:N pairs, e.g. 1:400,2:400, got {s!r}")


def _int_list(s: str) -> tuple[int, ...]:
    import argparse

    try:
        return tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}")


def configure(p) -> None:
    p.add_argument("--model", required=True, help="model directory, hub name or micro:<rung>")
    p.add_argument("--task", required=True,
                   help="gsm8k | math | gsm_symbolic | arith[:easy|medium|hard] | data file")
    p.add_argument("--shots", type=_int_list, default=(0,), help="e.g. 0,1,2,3,4,5")
    p.add_argument("--samples", type=int, default=1, help="completions per problem (pass@k)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--n-problems", type=int, default=None, help="held-out problems (default all)")
    p.add_argument("--shot-problems", type=_shot_problems, default=(),
                   help="fewer problems at some shot counts, e.g. 1:400,2:400 (the first 400 of "
                   "--n-problems); default: every problem at every shot count")
    p.add_argument("--checks", type=lambda s: tuple(x.strip() for x in s.split(",") if x.strip()),
                   default=None, help="answer checks, e.g. strict,flexible,custom_flexible")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64,
                   help="sequences per generation call (on the CPU split further by KV-cache size)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--dtype", default=None, help="fp32 | bf16 | fp16 (default: fp32 on CPU)")
    p.add_argument("--progress", action="store_true", help="progress bar even when not a TTY")
    p.add_argument("--chat", action="store_true", help="each prompt as one user message in the "
                   "model's chat template (instruct models); default: the raw text")
    p.add_argument("--chat-template-kwargs", default="",
                   help="with --chat: the template's extra variables as a JSON object, e.g. "
                   "'{\"enable_thinking\": false}' for Qwen3")
    p.add_argument("--system-prompt", default="",
                   help="with --chat: a system message before each prompt (lm-eval's "
                   "--system_instruction)")
    p.add_argument("--fewshot-as-multiturn", action="store_true",
                   help="with --chat: each exemplar as a user turn and an assistant turn, as "
                   "lm-eval's fewshot_as_multiturn; default: inside the one user message")
    p.add_argument("--out", required=True, help="output directory (resumes if it exists)")


def run(args) -> int:
    cfg = EvalConfig(model=args.model, task=args.task, out=args.out, shots=tuple(args.shots),
                     samples=args.samples, temperature=args.temperature, top_p=args.top_p,
                     max_new_tokens=args.max_new_tokens, n_problems=args.n_problems,
                     shot_problems=args.shot_problems, checks=args.checks, seed=args.seed,
                     batch_size=args.batch_size,
                     device=args.device, dtype=args.dtype, progress=args.progress,
                     chat=args.chat, fewshot_as_multiturn=args.fewshot_as_multiturn,
                     chat_template_kwargs=args.chat_template_kwargs,
                     system_prompt=args.system_prompt)
    summary = evaluate(cfg)
    print(format_table(summary))
    print(f"primary check: {summary['primary_check']}; test loss = 1 - pass@1; "
          f"completions and summary in {cfg.out}")
    return 0
