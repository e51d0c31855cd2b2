"""The stop-string check's decoder: the tokenizer's Rust backend called directly (the default,
rlscale.models.tokenizer.batch_decoder) against transformers' batch_decode (the peer, what the
check called until session 40), same run, on a study's pre-trained models and its workloads
(benchmarks/decode_study.py: held-out eval, a GRPO rollout, the 5-shot baseline; stop strings as
the study passes them). CPU seconds of generate(), one thread, the sides alternating over
rounds, the minimum per side; the texts of both sides must be equal (the check is exact).

    .venv/bin/python benchmarks/stop_check.py STUDY_DIR [--rungs 20k,60k,200k,600k] [--rounds 3]
"""
import time

from decode_study import parse_args, workloads

from rlscale import rollout
from rlscale.models import load_model


def transformers_decoder(tok):
    return lambda seqs: tok.batch_decode(seqs, skip_special_tokens=True)


def main() -> None:
    a = parse_args(__doc__, rungs="20k,60k,200k,600k", rounds=3, eval_prompts=800)
    ours = rollout.batch_decoder
    loads = workloads(a.study, a.eval_prompts, a.shot_prompts)
    for rung in a.rungs.split(","):
        model, tok = load_model(f"{a.study}/pretrain/{rung}/model")
        best: dict = {}
        texts: dict = {}
        for r in range(a.rounds):
            order = ("backend", "transformers")
            for side in order if r % 2 == 0 else order[::-1]:
                rollout.batch_decoder = ours if side == "backend" else transformers_decoder
                for name, (prompts, ps) in loads.items():
                    t = time.process_time()
                    g = rollout.generate(model, tok, prompts, ps, seed=0)
                    best[name, side] = min(best.get((name, side), 1e9), time.process_time() - t)
                    texts[name, side] = g.texts
        rollout.batch_decoder = ours
        for name, (prompts, _) in loads.items():
            b, t = best[name, "backend"], best[name, "transformers"]
            same = texts[name, "backend"] == texts[name, "transformers"]
            print(f"stop_check rung={rung} workload={name} rows={len(prompts)} backend_s={b:.2f} "
                  f"transformers_s={t:.2f} speedup={t / b:.2f} same_texts={same}", flush=True)


if __name__ == "__main__":
    main()
