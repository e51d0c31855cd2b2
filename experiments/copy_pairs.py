"""Paired differences between arms of `copy_screen.py` (session 39): its printed lines, one log
per arm, read back draw by draw.

    .venv/bin/python experiments/copy_pairs.py CONTROL.log ARM.log [ARM.log ...]

Per arm: the draws it shares with the control, those with an incomplete copy (the start copied
< 0.98 of the time at 0-shot), and for 0-shot story accuracy and the start copied at 0 and 1
shot the arm's mean, the control's, and the mean paired difference with its SE over draws.
"""
import re
import statistics as st
import sys

LINE = re.compile(r"draw (\d+) loss ([\d.]+) 0-shot acc ([\d.]+) copy ([\d.]+) "
                  r"1-shot acc ([\d.]+) copy ([\d.]+)")
COLUMNS = {"acc0": 1, "copy0": 2, "copy1": 4}  # indices into (loss, acc0, copy0, acc1, copy1)


def read(path: str) -> dict[int, tuple[float, ...]]:
    out = {}
    for line in open(path):
        if m := LINE.search(line):
            out[int(m[1])] = tuple(map(float, m.groups()[1:]))
    return out


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    control = read(sys.argv[1])
    for path in sys.argv[2:]:
        arm = read(path)
        draws = sorted(set(arm) & set(control))
        if len(draws) < 2:
            raise SystemExit(f"{path}: fewer than 2 draws shared with the control")
        bad = [d for d in draws if arm[d][2] < 0.98]
        cells = [f"{path}: {len(draws)} draws, incomplete {len(bad)} {bad}"]
        for name, j in COLUMNS.items():
            diff = [arm[d][j] - control[d][j] for d in draws]
            cells.append(f"{name} {st.mean(arm[d][j] for d in draws):.3f} (control "
                         f"{st.mean(control[d][j] for d in draws):.3f}) paired "
                         f"{st.mean(diff):+.3f} SE {st.stdev(diff) / len(diff) ** 0.5:.3f}")
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
