"""The CPU decoding's KV-cache budget per generate() batch (rollout.CPU_KV_BYTES, 64 MB, the
default and the peer) against smaller ones, same run, on a study's pre-trained models and its
three decoding workloads (benchmarks/decode_study.py: held-out eval, a GRPO rollout, the 5-shot
baseline). A smaller budget means fewer rows a batch, each step's K/V nearer the caches, more
steps. CPU seconds of generate(), one thread, the budgets in turn over rounds, the minimum per
budget. Sampled workloads draw other tokens at another batch size (one generator stream is
consumed batch by batch), so only the greedy 5-shot texts are compared (they must be equal).

    .venv/bin/python benchmarks/kv_budget.py STUDY_DIR [--rungs 20k,60k,200k,600k] [--rounds 3]
"""
from decode_study import parse_args, per_rung

from rlscale import rollout

BUDGETS_MB = (64, 32, 16, 8)


def main() -> None:
    a = parse_args(__doc__, rungs="20k,60k,200k,600k", rounds=3, eval_prompts=800)
    default = rollout.CPU_KV_BYTES
    sides = {mb: (lambda mb=mb: setattr(rollout, "CPU_KV_BYTES", mb << 20)) for mb in BUDGETS_MB}
    restore = lambda: setattr(rollout, "CPU_KV_BYTES", default)  # noqa: E731
    for rung, loads, best, texts in per_rung(a, sides, restore):
        for name, (prompts, ps) in loads.items():
            peer = best[name, BUDGETS_MB[0]]
            ratios = " ".join(f"{mb}MB={peer / best[name, mb]:.2f}" for mb in BUDGETS_MB[1:])
            equal = all(texts[name, mb] == texts[name, BUDGETS_MB[0]] for mb in BUDGETS_MB)
            same = f" greedy_texts_equal={equal}" if ps.temperature == 0 else ""
            print(f"kv_budget rung={rung} workload={name} rows={len(prompts)} "
                  f"s_64MB={peer:.2f} speedup_vs_64MB {ratios}{same}", flush=True)


if __name__ == "__main__":
    main()
