"""Models: micro tokenizer, ladder sizes, N convention, save/load round trip, spec errors."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch

from rlscale.errors import UserError
from rlscale.models import (
    LADDER,
    build_micro,
    load_model,
    micro_tokenizer,
    non_embedding_params,
    rung_name,
    save_model,
)
from rlscale.models import tokenizer as tokmod


def corpus(n=300, seed=0):
    """Stand-in task corpus: small, seeded, GSM8K-shaped."""
    r = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = r.randint(0, 99), r.randint(0, 99)
        out.append(f"Question: Ann has {a} cards and finds {b} more. How many cards?\n"
                   f"Answer: {a} + {b} = {a + b}\n#### {a + b}")
    return out


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLSCALE_CACHE", str(tmp_path / "cache"))
    # the default corpus comes from rlscale.tasks; tests use their own, small and fixed
    monkeypatch.setattr(tokmod, "_default_corpus", lambda n, seed, spec: corpus(200, seed))


@pytest.fixture
def tok():
    return micro_tokenizer(corpus=corpus())


def test_tokenizer_digits_roundtrip_special_tokens(tok):
    pieces = tok.tokenize("He has 12345 apples.\n#### 678")
    digits = [p.lstrip("Ġ") for p in pieces if any(c.isdigit() for c in p)]
    assert digits == list("12345678")  # every number is a sequence of single digits
    for text in ["Question: 3 + 4 = 7\n#### 7", "unicode: é 漢字 🙂 \t tabs", ""]:
        assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: nothing is unknown
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>"
    assert tok.eos_token_id != tok.pad_token_id
    assert tok.padding_side == "left"


def test_tokenizer_spaced_numbers_join_the_space_to_the_first_digit(tmp_path):
    """numbers="spaced": the token before a number's first digit is the word before it, not a
    bare space shared by every number; digits stay single; text round-trips; own cache key."""
    spaced = micro_tokenizer(corpus=corpus(), cache=tmp_path, numbers="spaced")
    plain = micro_tokenizer(corpus=corpus(), cache=tmp_path)
    assert len(list((tmp_path / "tokenizers").glob("*.json"))) == 2
    text = "Tom loses 19. What is 4 + 13?\n17 - 3 = 14\n#### 14"
    for tok, first in ((spaced, ["Ġ1", "Ġ4", "Ġ1", "Ġ3", "Ġ1", "Ġ1"]),
                       (plain, ["1", "4", "1", "3", "1", "1"])):
        pieces = tok.tokenize(text)
        digits = [i for i, p in enumerate(pieces) if any(c.isdigit() for c in p)]
        assert "".join(pieces[i].lstrip("Ġ") for i in digits) == "1941317314" "14"
        # the first digit of each number after a space: "Ġ1" spaced; "1" after a bare "Ġ" plain
        starts = [i for i in digits if i - 1 not in digits and pieces[i - 1] != "Ċ"]
        assert [pieces[i] for i in starts] == first
        assert all((pieces[i - 1] == "Ġ") == (tok is plain) for i in starts)
    for t in (text, " 7", "a  12 b", ""):
        assert spaced.decode(spaced(t)["input_ids"]) == t
    with pytest.raises(ValueError, match="numbers"):
        micro_tokenizer(corpus=corpus(), cache=tmp_path, numbers="words")


def test_tokenizer_deterministic_and_cached(tmp_path, monkeypatch):
    a = micro_tokenizer(corpus=corpus(), cache=tmp_path / "a")
    b = micro_tokenizer(corpus=corpus(), cache=tmp_path / "b")
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    files = list((tmp_path / "a" / "tokenizers").glob("*.json"))
    assert len(files) == 1
    # a second call reads the cache: training must not run again
    monkeypatch.setattr(tokmod, "train_bpe_json", lambda *a, **k: pytest.fail("retrained"))
    c = micro_tokenizer(corpus=corpus(), cache=tmp_path / "a")
    assert c.get_vocab() == a.get_vocab()
    # other settings, other key
    monkeypatch.undo()
    d = micro_tokenizer(vocab_size=300, corpus=corpus(), cache=tmp_path / "a")
    assert len(list((tmp_path / "a" / "tokenizers").glob("*.json"))) == 2
    assert len(d) <= 300


def test_ladder_names_match_measured_sizes(tok):
    for name, rung in LADDER.items():
        assert rung.head_dim * rung.heads == rung.hidden
        cfg = rung.config(tok)
        assert cfg.head_dim == rung.hidden // rung.heads  # not Qwen3's default 128
        with torch.device("meta"):  # sizes only: no memory, no init time
            from transformers import Qwen3ForCausalLM

            model = Qwen3ForCausalLM(cfg)
        n = non_embedding_params(model)
        m = re.fullmatch(r"(\d+)([km])", name)
        target = int(m.group(1)) * (1000 if m.group(2) == "k" else 1_000_000)
        assert abs(n - target) / target < 0.35, (name, n)
    sizes = [non_embedding_params(build_micro(n, tok)) for n in ("20k", "60k", "200k", "600k")]
    assert all(2 < b / a < 4.5 for a, b in zip(sizes, sizes[1:]))  # about 3x apart
    assert rung_name("micro:tiny") == min(LADDER, key=lambda n: LADDER[n].hidden * LADDER[n].layers)
    assert rung_name("micro:2M") == "2m"
    with pytest.raises(UserError, match="unknown micro rung"):
        rung_name("micro:7q")


def test_non_embedding_params_convention(tok):
    from transformers import Qwen3ForCausalLM

    cfg = LADDER["20k"].config(tok)
    tied = Qwen3ForCausalLM(cfg)
    emb = tied.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in tied.parameters())
    assert non_embedding_params(tied) == total - emb  # tied head not counted twice
    cfg.tie_word_embeddings = False
    untied = Qwen3ForCausalLM(cfg)
    assert untied.lm_head.weight is not untied.get_input_embeddings().weight
    # an untied LM head is an ordinary layer: it counts
    assert non_embedding_params(untied) == non_embedding_params(tied) + emb
    # by hand for one layer of the 20k rung: 4 h^2 attention + 2 hd q/k norms + 3 h I + 2 h
    h, i, hd = 32, 64, 16
    per_layer = 4 * h * h + 2 * hd + 3 * h * i + 2 * h
    assert non_embedding_params(tied) == 2 * per_layer + h


def test_build_micro_seeded(tok):
    a, b, c = build_micro("tiny", tok, 0), build_micro("tiny", tok, 0), build_micro("tiny", tok, 1)
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)
    assert not a.training and next(a.parameters()).dtype == torch.float32
    assert a.config.eos_token_id == tok.eos_token_id


def test_save_then_load_with_plain_transformers(tmp_path, tok):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = build_micro("micro:60k", tok, seed=3)
    out = save_model(model, tok, tmp_path / "models" / "m")
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "config.json" in names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    m2 = AutoModelForCausalLM.from_pretrained(out)
    t2 = AutoTokenizer.from_pretrained(out)
    text = "Question: Ann has 7 cards.\n#### 7"
    assert t2(text)["input_ids"] == tok(text)["input_ids"]
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, m2.eval()(ids).logits)
    m3, t3 = load_model(str(out))
    assert non_embedding_params(m3) == non_embedding_params(model)
    assert t3.pad_token_id == tok.pad_token_id and t3.padding_side == "left"
    save_model(model, tok, out)  # overwriting an existing save works and leaves no temp dirs
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m"]


def test_load_micro_spec():
    model, tok = load_model("micro:tiny", seed=0)
    assert next(model.parameters()).dtype == torch.float32
    assert model.config.vocab_size == len(tok)
    assert non_embedding_params(model) == non_embedding_params(build_micro("20k", tok))
    with pytest.raises(UserError, match="unknown micro rung"):
        load_model("micro:huge")
    with pytest.raises(UserError, match="dtype"):
        load_model("micro:tiny", dtype="int3")


def test_load_model_errors_name_the_problem(tmp_path, tok):
    missing = tmp_path / "nope"
    with pytest.raises(UserError, match=f"{re.escape(str(missing))}: no such model directory"):
        load_model(str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_model(str(empty))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        load_model(str(a_file))
    saved = save_model(build_micro("tiny", tok), tok, tmp_path / "m")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((saved / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(UserError, match="pickle.*safetensors only"):
        load_model(str(pickled))
    (pickled / "pytorch_model.bin").unlink()
    with pytest.raises(UserError, match="no weights"):
        load_model(str(pickled))
    (saved / "tokenizer.json").unlink()
    (saved / "tokenizer_config.json").unlink()
    with pytest.raises(UserError, match="no tokenizer"):
        load_model(str(saved))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    (bad / "model.safetensors").write_bytes(b"")
    (bad / "tokenizer.json").write_text("{}")
    with pytest.raises(UserError) as e:
        load_model(str(bad))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_hub_name_without_network_is_one_line_error(monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as e:
        load_model("rlscale-test/no-such-model-xyz")
    msg = str(e.value)
    assert "rlscale-test/no-such-model-xyz" in msg and "\n" not in msg
