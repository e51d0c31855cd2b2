"""Does a change to the task make the bottom rung's copy transition reliable? (session 38)

One rung of a study is pre-trained again with the study's job parameters (from its plan: no
finished study needed; STUDY is a study directory or a preset name, with --seed) on its own
train split, the task optionally changed by extra arith settings (e.g.
`--extra ,quote_start=1`: the problems stay the same, their worked solutions change), on a
budget of its own, with initialisation seed = batch-order seed = each draw; then greedy 0- and
1-shot on the study's held-out problems, exemplars drawn as the study's baseline draws them.
Prints one line per draw: the final training loss, story accuracy at 0 and 1 shots, and the
share of worked stories whose first equation starts from the question's own start number (the
copy a draw below its transition gets wrong: docs/study.md, sessions 37-38), and (session 40)
the last layer's induction head on the start's next token (copy_probe.last_layer_head: ~0.25-0.4
with a complete copy, <= 0.004 without). One thread; run two processes side by side on two
cores.

    .venv/bin/python experiments/copy_screen.py cpu-words-10m 20k OUT --seed 0 --draws 101,102 \
        [--extra ,quote_start=1] [--tokens 3000000] [--set lr=0.02] [--shape 32,2,4,64]
"""
import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from copy_probe import last_layer_head
from story_start import first_step

from rlscale.arith import question_style, story_start
from rlscale.evaluate import EvalConfig, evaluate
from rlscale.files import read_jsonl
from rlscale.pretrain import PretrainConfig, pretrain
from rlscale.study_plan import plan, write_task
from rlscale.study_presets import PRESETS


def copy_stats(eval_dir: Path) -> dict:
    """Per shot count: story accuracy, and of the worked stories starting from digits, the share
    whose first equation's first operand is the question's start."""
    out = {}
    for r in read_jsonl(eval_dir / "completions.jsonl"):
        if question_style(r["question"]) == "expr":
            continue
        s = out.setdefault(r["shots"], dict(n=0, ok=0, worked=0, start=0))
        s["n"] += 1
        s["ok"] += r["scores"]["custom_flexible"][0]
        first = first_step(r["completions"][0], any_line=True)
        start = story_start(r["question"])
        if first and start is not None:
            s["worked"] += 1
            s["start"] += first[0] == start
    return {k: dict(acc=s["ok"] / s["n"], copy=s["start"] / max(s["worked"], 1),
                    worked=s["worked"]) for k, s in sorted(out.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", help="a study directory (its preset and seed) or a preset name")
    ap.add_argument("--seed", type=int, default=0, help="with a preset name: the study's seed")
    ap.add_argument("rung", help="e.g. 20k")
    ap.add_argument("out")
    ap.add_argument("--draws", required=True, help="comma-separated seeds, e.g. 101,102")
    ap.add_argument("--extra", default="", help="appended to the task spec, e.g. ,quote_start=1")
    ap.add_argument("--tokens", type=int, default=None, help="default: the study's budget")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a pre-training setting changed, as JSON (e.g. lr=0.02, "
                         "loss_on='\"answer\"'); repeatable")
    ap.add_argument("--shape", default=None, metavar="H,L,HEADS,I",
                    help="another shape for the rung (hidden, layers, heads, intermediate), "
                         "registered for this run only as micro:screen")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.shape:
        from rlscale.models import LADDER
        from rlscale.models.ladder import MicroRung

        h, layers, heads, inter = map(int, a.shape.split(","))
        LADDER["screen"] = MicroRung(hidden=h, layers=layers, heads=heads, intermediate=inter)
    if Path(a.study, "study.json").is_file():
        saved = json.load(open(f"{a.study}/study.json"))["preset"]
        preset = replace(PRESETS[saved["name"]], seed=saved["seed"])
    else:
        preset = replace(PRESETS[a.study], seed=a.seed)
    preset = replace(preset, task=preset.task + a.extra)
    out = Path(a.out)
    write_task(preset, out)  # the study's problems (same seed), solutions per the extra settings
    jobs = {j.name: j.params for j in plan(preset, out)}
    cfg = jobs[f"pretrain:{a.rung}"]
    base = dict(jobs[f"baseline:{a.rung}"], temperature=0.0, samples=1)
    for s in map(int, a.draws.split(",")):
        run = out / f"draw{s}"
        c = dict(cfg, seed=s, data_seed=s, task=str(out / "task"))
        if a.shape:
            c["rung"] = "micro:screen"
        if a.tokens:
            c["tokens"] = a.tokens
        for kv in a.set:
            key, value = kv.split("=", 1)
            if key not in PretrainConfig.__dataclass_fields__:
                raise SystemExit(f"--set {kv}: no pre-training setting {key!r}")
            c[key] = json.loads(value)
        res = pretrain(PretrainConfig(**c), run / "pretrain", progress=False)
        evaluate(EvalConfig(**{**base, "shots": (0, 1), "model": str(run / "pretrain/model"),
                               "task": str(out / "task"), "out": str(run / "eval"),
                               "device": "cpu", "progress": False}))
        st = copy_stats(run / "eval")
        head = last_layer_head(run / "pretrain/model", run / "eval")
        print(a.rung, f"extra={a.extra or '-'}", *a.set, f"shape={a.shape or '-'}", "draw", s, f"loss {res['final_loss']:.4f}",
              " ".join(f"{k}-shot acc {v['acc']:.3f} copy {v['copy']:.3f}" for k, v in st.items()),
              f"head {head:.3f}", flush=True)


if __name__ == "__main__":
    main()
