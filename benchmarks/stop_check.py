"""The stop-string check of the decoding loop against a peer, same run, on a study's pre-trained
models and its workloads (benchmarks/decode_study.py: held-out eval, a GRPO rollout, the 5-shot
baseline; stop strings as the study passes them). CPU seconds of generate(), one thread, the
sides alternating over rounds, the minimum per side; the texts of both sides must be equal (the
check is exact). The peers:

    --peer all-rows      every live row's tail decoded at every step (the check until session
                         49; now only the rows whose new token can end a stop string,
                         rlscale.models.tokenizer.stop_end_tokens)
    --peer transformers  transformers' batch_decode for every decode of the check and of the
                         final texts (until session 40; now the tokenizer's Rust backend called
                         directly, rlscale.models.tokenizer.batch_decoder)

    .venv/bin/python benchmarks/stop_check.py STUDY_DIR [--peer all-rows|transformers]
        [--rungs 20k,60k,200k,600k] [--rounds 3]
"""
import sys

from decode_study import parse_args, per_rung

from rlscale import rollout

PEERS = ("all-rows", "transformers")


def transformers_decoder(tok):
    return lambda seqs: tok.batch_decode(seqs, skip_special_tokens=True)


def sides(peer: str) -> dict:
    """name -> a function that switches generate() to that side; "ours" first."""
    decoder, ends = rollout.batch_decoder, rollout.stop_end_tokens

    def use(d, e):
        def switch():
            rollout.batch_decoder, rollout.stop_end_tokens = d, e
        return switch

    peer_side = (use(decoder, lambda tok, stops: None) if peer == "all-rows"
                 else use(transformers_decoder, ends))
    return {"ours": use(decoder, ends), peer: peer_side}


def main() -> None:
    peer = "all-rows"
    if "--peer" in sys.argv:  # decode_study's parser takes the shared flags
        i = sys.argv.index("--peer")
        peer = sys.argv[i + 1] if i + 1 < len(sys.argv) else ""
        del sys.argv[i:i + 2]
        if peer not in PEERS:
            sys.exit(f"stop_check: --peer: one of {', '.join(PEERS)}")
    a = parse_args(__doc__, rungs="20k,60k,200k,600k", rounds=3, eval_prompts=800)
    sw = sides(peer)
    for rung, loads, best, texts in per_rung(a, sw, sw["ours"]):
        for name, (prompts, _) in loads.items():
            o, p = best[name, "ours"], best[name, peer]
            same = texts[name, "ours"] == texts[name, peer]
            print(f"stop_check rung={rung} workload={name} rows={len(prompts)} peer={peer} "
                  f"ours_s={o:.2f} peer_s={p:.2f} speedup={p / o:.2f} same_texts={same}",
                  flush=True)


if __name__ == "__main__":
    main()
