"""Where does the bottom rung look when it decides where a story's start number ends? (session 40)

For each model (a copy_screen draw's pre-trained rung, or any DIR with pretrain/model and
eval/completions.jsonl) and each 0-shot story of its eval whose first worked step begins with the
start's first digit, the model's own text up to and with that digit is run once through the HF
forward with eager attention. The next token is the start's second digit or the number's end:
where a draw's copy is incomplete it goes wrong here (experiments/start_digits.py). Per layer
and head, the last query's attention on the token after the start's first token in the question
(what an induction head copies) is averaged over the copied and the missed cases; printed for
the head that looks there most when the copy is right. One thread; one forward per story.

    .venv/bin/python experiments/copy_probe.py SCREEN_OUT/draw101 [SCREEN_OUT/draw102 ...] \
        [--stories 600]
    .venv/bin/python experiments/copy_probe.py STUDY [STUDY ...] --rung 20k
"""
import argparse
import re
from pathlib import Path

import torch

from rlscale.arith import story_start
from rlscale.files import read_jsonl
from rlscale.models import load_model


def char_span_tokens(offsets, lo: int, hi: int) -> list[int]:
    """Token positions whose character span overlaps [lo, hi)."""
    return [i for i, (a, b) in enumerate(offsets) if a < hi and b > lo and b > a]


def story_case(r: dict):
    """(text up to and with the operand's first digit, the start's char span, copied) of one
    0-shot record whose operand starts with the start's first digit, else None. The next token
    decides the number's end: the start's second digit, or the end of a one-digit start; a
    draw with an incomplete copy gets this wrong and the first digit right (session 40)."""
    q = r["question"]
    start = story_start(q)
    if start is None:
        return None
    # the space goes with the number: the micro tokenizer's "spaced" numbers join it to the
    # first digit
    m = re.match(r"(\s*[^\n]*?:) (\d+) [-+*/] \d+ = \d+", r["completions"][0])
    want, got = str(start), m[2] if m else ""
    if not got or got[0] != want[0]:
        return None
    prompt, qs = r["prompt"], r["prompt"].rindex(q)
    sm = re.search(rf"\b{want}\b", q)
    return prompt + m[1] + " " + got[0], (qs + sm.start(), qs + sm.end()), want == got


@torch.no_grad()
def head_mass(model_dir: Path, evals: Path, stories: int = 600):
    """(mass, count, L, H): per case kind (copied True / missed False) the summed attention
    [L, H] of the last query on the token after the start's first token in the question (the
    start's second digit or the word after it: what an induction head copies), and the number
    of cases of each kind, over the first `stories` cases of evals/completions.jsonl."""
    model, tok = load_model(str(model_dir))
    model.set_attn_implementation("eager")
    cases = [c for r in read_jsonl(evals / "completions.jsonl")
             if r["shots"] == 0 and (c := story_case(r))][:stories]
    L, H = model.config.num_hidden_layers, model.config.num_attention_heads
    mass = {k: torch.zeros(L, H) for k in (True, False)}
    count = {True: 0, False: 0}
    for text, start, copied in cases:
        enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
        out = model(torch.tensor([enc["input_ids"]]), output_attentions=True)
        nxt = char_span_tokens(enc["offset_mapping"], *start)[0] + 1
        mass[copied] += torch.stack([a[0, :, -1, nxt] for a in out.attentions])
        count[copied] += 1
    return mass, count, L, H


def last_layer_head(model_dir: Path, evals: Path, stories: int = 600) -> float:
    """The last layer's best head's mean attention on that token over the copied cases: ~0.26-0.4
    where the copy is complete, <= 0.004 where it is not (session 40); 0 without copied cases."""
    mass, count, L, _ = head_mass(model_dir, evals, stories)
    return float(mass[True][L - 1].max()) / count[True] if count[True] else 0.0


def probe(draw: Path, stories: int, rung: str | None = None) -> str:
    """draw: a copy_screen draw, or with rung a study directory (its baseline's 0-shot)."""
    model_dir, evals = ((draw / "pretrain" / rung / "model", draw / "baseline" / rung) if rung
                        else (draw / "pretrain/model", draw / "eval"))
    mass, count, L, H = head_mass(model_dir, evals, stories)
    n = count[True] + count[False]
    ok = mass[True] / max(count[True], 1)
    cells = [f"{draw} cases {n} copied {count[True] / max(n, 1):.3f}"]
    # the head that looks there most when the copy is right, over all layers and in the last
    # (an induction head needs a layer before it)
    for what, (li, hi) in (("any layer", divmod(int(ok.argmax()), H)),
                           ("last layer", (L - 1, int(ok[L - 1].argmax())))):
        cells.append(f"{what}: head {li}.{hi} " + " ".join(
            f"{name} {float(mass[k][li, hi]) / count[k]:.3f}"
            for k, name in ((True, "copied"), (False, "missed")) if count[k]))
    return " | ".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("draws", nargs="+")
    ap.add_argument("--stories", type=int, default=600)
    ap.add_argument("--rung", default=None, help="the DIRs are studies: probe this rung")
    a = ap.parse_args()
    torch.set_num_threads(1)
    for d in a.draws:
        print(probe(Path(d), a.stories, a.rung), flush=True)


if __name__ == "__main__":
    main()
