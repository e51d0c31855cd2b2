"""lm-eval's GSM8K scores of completions (runs in the interop environment, .venv-verl).

    python lmeval_scores.py CASES.json  -> one JSON list: [strict-match, flexible-extract] a case

CASES.json is a list of [completion, gold answer]. lm-eval 0.4.13's own GSM8K task (its shipped
gsm8k.yaml, built as `lmeval_prompts.task_for` builds it) scores each completion as its
evaluator does: the task's filter ensembles ("strict-match", "flexible-extract") on an Instance
holding the completion, then `process_results` (exact_match with the yaml's ignore_case and
regexes_to_ignore) against the doc's target "...#### gold".
"""

import json
import os
import sys
import tempfile


def scores(cases: list[list[str]]) -> list[list[float]]:
    from lm_eval.api.instance import Instance

    from lmeval_prompts import task_for

    with tempfile.TemporaryDirectory() as d:
        task = task_for([], {"question": "q", "answer": "#### 0"}, d)
    docs = [{"question": "q", "answer": f"step\n#### {gold}"} for _, gold in cases]
    insts = [Instance(request_type="generate_until", doc=doc, arguments=("", {}), idx=0)
             for doc in docs]
    for inst, (text, _) in zip(insts, cases):
        inst.resps = [text]
    names = [f.name for f in task._filters]
    for ensemble in task._filters:
        ensemble.apply(insts)
    out = [[task.process_results(i.doc, [i.filtered_resps[n]])["exact_match"]
            for n in ("strict-match", "flexible-extract")] for i in insts]
    assert names == ["strict-match", "flexible-extract"], names
    return out


if __name__ == "__main__":
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with open(sys.argv[1]) as f, tempfile.TemporaryDirectory() as cache:
        os.environ["HF_DATASETS_CACHE"] = cache  # before datasets is imported: not the user's
        print(json.dumps(scores(json.load(f))), flush=True)
