"""Summary of experiments/more_tokens.sh OUT: per rung and budget (the study's, more), greedy and
T=0.7 accuracy with SE before -> after RL, and the worked advantage (rlscale.chains)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from rlscale.chains import answer_styles
from rlscale.files import read_jsonl


def acc(d: Path) -> str:
    rows = read_jsonl(d / "completions.jsonl")
    per = [sum(r["scores"]["custom_flexible"]) / len(r["scores"]["custom_flexible"]) for r in rows]
    m = sum(per) / len(per)
    sd = math.sqrt(sum((x - m) ** 2 for x in per) / (len(per) - 1))
    return f"{m:.3f} ± {sd / math.sqrt(len(per)):.3f}"


def main(out: Path) -> None:
    for rung in sorted({d.name.split("-")[1] for d in out.glob("ev-*")}, key=lambda r: (len(r), r)):
        for budget in ("study", "more"):
            cells = []
            for when in ("base", "rl"):
                d = out / f"ev-{rung}-{budget}-{when}"
                if (d / "t1" / "completions.jsonl").is_file():
                    adv = answer_styles(read_jsonl(d / "t1" / "completions.jsonl"))
                    cells.append(f"{when}: greedy {acc(d / 'greedy')}, T=0.7 {acc(d / 't07')}, "
                                 f"worked advantage {adv['worked_advantage']:+.3f}")
            if cells:
                print(rung, budget, " | ".join(cells))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
