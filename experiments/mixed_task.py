"""mixed_task.py OUT SPEC_A SPEC_B (session 12): a task directory mixing two arith specs half and
half (10000 + 10000 train problems, the validation side 400 + 400 as test.jsonl), shuffled
with seed 0; OUT/task and OUT/val as experiments/rung_pilot.sh reads them. Session 11's
story-levels task is this with `arith:ladder,style=words,max_terms=7` and
`arith:ladder,style=expr` (the same files byte for byte as its earlier script wrote)."""
import json
import random
import shutil
import sys
from pathlib import Path

from rlscale.tasks import load_task

out, specs = Path(sys.argv[1]), sys.argv[2:4]
rows = lambda ps: [json.dumps({"question": p.question, "answer": p.solution,  # noqa: E731
                               "level": p.level}) for p in ps]
train, test = [], []
for spec in specs:
    t = load_task(f"{spec},heldout=validation", seed=0, n_test=400, n_train=10000)
    train += rows(t.train)
    test += rows(t.test)
rng = random.Random(0)
rng.shuffle(train)
rng.shuffle(test)
(out / "task").mkdir(parents=True, exist_ok=True)
(out / "task" / "train.jsonl").write_text("\n".join(train) + "\n")
(out / "task" / "test.jsonl").write_text("\n".join(test) + "\n")
shutil.copytree(out / "task", out / "val", dirs_exist_ok=True)
print(len(train), len(test))
