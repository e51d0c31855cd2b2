"""The stop-string check's decoder: the tokenizer's Rust backend called directly (the default,
rlscale.models.tokenizer.batch_decoder) against transformers' batch_decode (the peer, what the
check called until session 40), same run, on a study's pre-trained models and its workloads
(benchmarks/decode_study.py: held-out eval, a GRPO rollout, the 5-shot baseline; stop strings as
the study passes them). CPU seconds of generate(), one thread, the sides alternating over
rounds, the minimum per side; the texts of both sides must be equal (the check is exact).

    .venv/bin/python benchmarks/stop_check.py STUDY_DIR [--rungs 20k,60k,200k,600k] [--rounds 3]
"""
from decode_study import parse_args, per_rung

from rlscale import rollout


def transformers_decoder(tok):
    return lambda seqs: tok.batch_decode(seqs, skip_special_tokens=True)


def main() -> None:
    a = parse_args(__doc__, rungs="20k,60k,200k,600k", rounds=3, eval_prompts=800)
    ours = rollout.batch_decoder
    sides = {"backend": lambda: setattr(rollout, "batch_decoder", ours),
             "transformers": lambda: setattr(rollout, "batch_decoder", transformers_decoder)}
    for rung, loads, best, texts in per_rung(a, sides, sides["backend"]):
        for name, (prompts, _) in loads.items():
            b, t = best[name, "backend"], best[name, "transformers"]
            same = texts[name, "backend"] == texts[name, "transformers"]
            print(f"stop_check rung={rung} workload={name} rows={len(prompts)} backend_s={b:.2f} "
                  f"transformers_s={t:.2f} speedup={t / b:.2f} same_texts={same}", flush=True)


if __name__ == "__main__":
    main()
