"""--chat: prompts as one user message in the model's chat template (instruct models), in GRPO
and `rlscale eval`; a tokenizer without a template is refused at the door."""

import json

from rlscale.cli import main
from rlscale.files import read_jsonl
from rlscale.models.tokenizer import chat_prompts, encode_ids


def chat_dir(path):
    """micro:tiny with a ChatML template and its two tokens (the model resized to read them);
    the template reads a variable, enable_thinking, as Qwen3's does."""
    from rlscale.models import load_model

    model, tok = load_model("micro:tiny", "cpu", "fp32")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                         "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
                         "<|im_start|>assistant\n{% if enable_thinking is defined and "
                         "enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
                         "{% endif %}")  # Qwen3's switch for its thinking mode
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return tok


class BosTokenizer:
    """A tokenizer that adds BOS by itself and whose template writes it too (Llama 3's way)."""
    chat_template, bos_token, bos_token_id = "t", "<s>", 1

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return f"<s>[U] {messages[0]['content']} [A]" if add_generation_prompt else ""

    def __call__(self, texts, add_special_tokens=True, **kw):
        return {"input_ids": [([1] if add_special_tokens else []) + [ord(c) for c in t]
                              for t in texts]}


def test_chat_prompt_renders_the_template_with_one_bos():
    tok = BosTokenizer()
    assert chat_prompts(tok, ["Question: 2 + 2?"])[0] == "[U] Question: 2 + 2? [A]"
    ids = encode_ids(tok, chat_prompts(tok, ["hi"]))[0]
    assert ids.count(1) == 1 and ids[0] == 1  # the tokenizer's BOS, once


def test_chat_refused_without_a_template_nothing_written(tmp_path, capsys):
    for argv in (["train", "--model", "micro:tiny", "--chat", "--out", str(tmp_path / "t")],
                 ["eval", "--model", "micro:tiny", "--task", "arith", "--chat",
                  "--out", str(tmp_path / "e")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "no chat template" in err and "\n" not in err
    assert not (tmp_path / "t").exists() and not (tmp_path / "e").exists()


def test_chat_prompts_in_training_and_evaluation(tmp_path):
    tok = chat_dir(tmp_path / "m")
    m = str(tmp_path / "m")
    prompt_tokens = {}
    for chat in (True, False):
        run = tmp_path / f"run{chat}"
        assert main(["train", "--model", m, "--task", "arith:easy", "--batch-size", "2",
                     "--group-size", "2", "--steps", "1", "--max-new-tokens", "6", "--heldout",
                     "4", "--eval-every", "1", "--out", str(run)] + ["--chat"] * chat) == 0
        assert json.loads((run / "config.json").read_text())["chat"] is chat
        prompt_tokens[chat] = read_jsonl(run / "metrics.jsonl")[-1]["prompt_tokens"]
    # the same 2 prompts x 2 samples, each in the template: its framing tokens on every row
    frame = len(encode_ids(tok, chat_prompts(tok, [""]))[0])
    assert prompt_tokens[True] == prompt_tokens[False] + 4 * frame
    assert main(["eval", "--model", m, "--task", "arith:easy", "--chat", "--n-problems", "3",
                 "--max-new-tokens", "6", "--out", str(tmp_path / "ev")]) == 0
    rows = read_jsonl(tmp_path / "ev" / "completions.jsonl")
    assert all(r["prompt"].startswith("<|im_start|>user\nQuestion: ") and
               r["prompt"].endswith("<|im_start|>assistant\n") for r in rows)
    # the same eval without --chat is another eval: it does not resume this one
    assert main(["eval", "--model", m, "--task", "arith:easy", "--n-problems", "3",
                 "--max-new-tokens", "6", "--out", str(tmp_path / "ev")]) == 2
    assert tok.convert_tokens_to_ids("<|im_end|>") >= 0


def test_chat_prompt_is_trls_conversational_prompt(tmp_path):
    """TRL renders a conversational prompt row with its own maybe_apply_chat_template: the same
    text as chat_prompts (this tokenizer adds no BOS, so nothing is left to it)."""
    import pytest

    trl_data = pytest.importorskip("trl.data_utils")
    tok = chat_dir(tmp_path / "m")
    text = "Question: Ann has 3 pens. She gets 4 more. How many pens does Ann have now?\nAnswer:"
    row = {"prompt": [{"role": "user", "content": text}]}
    assert trl_data.maybe_apply_chat_template(row, tok)["prompt"] == chat_prompts(tok, [text])[0]
    turns = [{"role": "user", "content": "Question: 1 + 1?\nAnswer:"},
             {"role": "assistant", "content": "1 + 1 = 2\n#### 2"}] + row["prompt"]
    assert (trl_data.maybe_apply_chat_template({"prompt": turns}, tok)["prompt"]
            == chat_prompts(tok, [turns])[0])
    assert (trl_data.maybe_apply_chat_template(row, tok, enable_thinking=False)["prompt"]
            == chat_prompts(tok, [text], enable_thinking=False)[0] != chat_prompts(tok, [text])[0])


def test_fewshot_as_multiturn_is_lm_evals(tmp_path):
    """lm-eval's own GSM8K task (0.4.13, in the interop env) builds a k-shot chat prompt with
    fewshot_as_multiturn off and on: rlscale's messages (`tasks.prompt_messages`) and the text
    it feeds the model (`task_prompts`) are lm-eval's, for 0, 1 and 3 exemplars, and with a
    system prompt (lm-eval's system_instruction). The two modes differ wherever there is an
    exemplar (the test can fail)."""
    import subprocess

    from rlscale.models.tokenizer import ChatStyle, task_prompts
    from rlscale.tasks import load_task, prompt_messages
    from verl_env import REPO, lmeval_python

    tok = chat_dir(tmp_path / "m")
    task = load_task("arith:ladder", seed=3, n_test=4, n_train=40)
    cases = [(task.test[i], task.train[4 * i:4 * i + k], system)
             for i, (k, system) in enumerate(((0, ""), (1, ""), (3, ""), (2, "Be brief.")))]
    doc = lambda p: {"question": p.question, "answer": p.solution}  # noqa: E731
    (tmp_path / "cases.json").write_text(json.dumps(
        [{"exemplars": [doc(e) for e in ex], "doc": doc(p), **({"system": s} if s else {})}
         for p, ex, s in cases]))
    r = subprocess.run([lmeval_python(), str(REPO / "tests" / "lmeval_prompts.py"),
                        str(tmp_path / "m"), str(tmp_path / "cases.json")],
                       capture_output=True, text=True, timeout=600)
    got = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert r.returncode == 0 and len(got) == 4, r.stdout[-3000:] + r.stderr[-3000:]
    for (p, ex, system), lm in zip(cases, got):
        for multiturn in (False, True):
            assert prompt_messages(p, ex, multiturn, system) == lm[str(multiturn)]["messages"]
            assert (task_prompts(tok, [p], [ex], ChatStyle(multiturn, system))
                    == [lm[str(multiturn)]["text"]])
        assert (lm["True"]["text"] != lm["False"]["text"]) == bool(ex)
    assert [len(lm["True"]["messages"]) for lm in got] == [1, 3, 7, 6]


def test_fewshot_as_multiturn_in_training_and_evaluation(tmp_path, capsys):
    """--fewshot-as-multiturn puts each exemplar in turns of its own, in `rlscale eval` (k-shot
    prompts, 0-shot unchanged) and in GRPO's prompts and in-run evals; without --chat it is
    refused in one line, nothing written."""
    m = str(tmp_path / "m")
    chat_dir(tmp_path / "m")
    capsys.readouterr()
    for argv in (["train", "--model", m, "--fewshot-as-multiturn", "--out", str(tmp_path / "t")],
                 ["eval", "--model", m, "--task", "arith", "--fewshot-as-multiturn",
                  "--out", str(tmp_path / "e")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "needs --chat" in err and "\n" not in err
    assert not (tmp_path / "t").exists() and not (tmp_path / "e").exists()
    rows = {}
    for multiturn in (False, True):
        out = tmp_path / f"ev{multiturn}"
        assert main(["eval", "--model", m, "--task", "arith:easy", "--chat", "--shots", "0,2",
                     "--n-problems", "2", "--max-new-tokens", "4", "--out", str(out)]
                    + ["--fewshot-as-multiturn"] * multiturn) == 0
        rows[multiturn] = {(r["shots"], r["index"]): r["prompt"]
                           for r in read_jsonl(out / "completions.jsonl")}
    turn = "<|im_start|>assistant\n"
    for key, text in rows[True].items():
        assert text.count(turn) == 1 + key[0] and text.endswith(turn)
        assert (text == rows[False][key]) == (key[0] == 0)
    # resuming an eval with the other setting is another eval: refused
    assert main(["eval", "--model", m, "--task", "arith:easy", "--chat", "--shots", "0,2",
                 "--n-problems", "2", "--max-new-tokens", "4", "--out",
                 str(tmp_path / "evFalse"), "--fewshot-as-multiturn"]) == 2
    tokens = {}
    for multiturn in (False, True):
        run = tmp_path / f"run{multiturn}"
        assert main(["train", "--model", m, "--task", "arith:easy", "--batch-size", "2",
                     "--group-size", "2", "--steps", "1", "--max-new-tokens", "4", "--fewshot",
                     "2", "--heldout", "3", "--eval-every", "1", "--chat", "--out", str(run)]
                    + ["--fewshot-as-multiturn"] * multiturn) == 0
        tokens[multiturn] = read_jsonl(run / "metrics.jsonl")[-1]["prompt_tokens"]
    assert tokens[True] > tokens[False]  # two more turns' framing on every row


def test_chat_template_kwargs_reach_the_template(tmp_path, capsys):
    """--chat-template-kwargs (train and eval): the template's variables as a JSON object, e.g.
    Qwen3's enable_thinking; stored with sorted keys, so the same setting written another way
    resumes the same eval; bad ones and ones without --chat refused in one line, nothing
    written."""
    m = str(tmp_path / "m")
    tok = chat_dir(tmp_path / "m")
    capsys.readouterr()
    for bad, why in (("{", "not JSON"), ("[1]", "expected a JSON object"),
                     ('{"tokenize": true}', "set by rlscale"), ('{"a": [1]}', "values are"),
                     ('{"a-b": 1}', "not a template variable"), ('{"a": 1}', "needs --chat")):
        chat = [] if why == "needs --chat" else ["--chat"]
        for argv in (["train", "--model", m, "--out", str(tmp_path / "t")],
                     ["eval", "--model", m, "--task", "arith", "--out", str(tmp_path / "e")]):
            assert main(argv + chat + ["--chat-template-kwargs", bad]) == 2
            err = capsys.readouterr().err.strip()
            assert why in err and "--chat-template-kwargs" in err and "\n" not in err, err
    assert not (tmp_path / "t").exists() and not (tmp_path / "e").exists()
    think = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert chat_prompts(tok, ["q"], enable_thinking=False)[0].endswith(think)
    ev = ["eval", "--model", m, "--task", "arith:easy", "--chat", "--n-problems", "2",
          "--max-new-tokens", "4", "--out", str(tmp_path / "ev"), "--chat-template-kwargs"]
    assert main(ev + ['{ "enable_thinking" : false }']) == 0
    assert json.loads((tmp_path / "ev" / "config.json").read_text())[
        "chat_template_kwargs"] == '{"enable_thinking":false}'
    rows = read_jsonl(tmp_path / "ev" / "completions.jsonl")
    assert len(rows) == 2 and all(r["prompt"].endswith(think) for r in rows)
    assert main(ev + ['{"enable_thinking": false}']) == 0  # the same setting: resumes
    assert main(ev + ['{"enable_thinking": true}']) == 2  # another eval: refused
    tokens = {}
    for kwargs in ("", '{"enable_thinking": false}'):
        run = tmp_path / f"run{len(kwargs)}"
        assert main(["train", "--model", m, "--task", "arith:easy", "--batch-size", "2",
                     "--group-size", "2", "--steps", "1", "--max-new-tokens", "4", "--heldout",
                     "2", "--chat", "--chat-template-kwargs", kwargs, "--out", str(run)]) == 0
        saved = json.loads((run / "config.json").read_text())["chat_template_kwargs"]
        assert saved == ('{"enable_thinking":false}' if kwargs else "")
        tokens[kwargs] = read_jsonl(run / "metrics.jsonl")[-1]["prompt_tokens"]
    assert tokens['{"enable_thinking": false}'] > tokens[""]  # the empty think block, each row


def test_system_prompt_in_evaluation_and_training(tmp_path, capsys):
    """--system-prompt (train and eval): a system message before each prompt, in the model's
    template; pinned by an eval, a setting of the run; refused without --chat in one line."""
    m = str(tmp_path / "m")
    chat_dir(tmp_path / "m")
    capsys.readouterr()
    for argv in (["train", "--model", m, "--out", str(tmp_path / "t")],
                 ["eval", "--model", m, "--task", "arith", "--out", str(tmp_path / "e")]):
        assert main(argv + ["--system-prompt", "Be brief."]) == 2
        err = capsys.readouterr().err.strip()
        assert "--system-prompt: needs --chat" in err and "\n" not in err
    assert not (tmp_path / "t").exists() and not (tmp_path / "e").exists()
    ev = ["eval", "--model", m, "--task", "arith:easy", "--chat", "--n-problems", "2",
          "--max-new-tokens", "4", "--out", str(tmp_path / "ev")]
    assert main(ev + ["--system-prompt", "Be brief."]) == 0
    rows = read_jsonl(tmp_path / "ev" / "completions.jsonl")
    head = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQuestion: "
    assert len(rows) == 2 and all(r["prompt"].startswith(head) for r in rows)
    assert main(ev) == 2  # the same eval without it is another eval
    run = tmp_path / "run"
    assert main(["train", "--model", m, "--task", "arith:easy", "--batch-size", "2",
                 "--group-size", "2", "--steps", "1", "--max-new-tokens", "4", "--heldout", "2",
                 "--chat", "--system-prompt", "Be brief.", "--log-samples", "1",
                 "--out", str(run)]) == 0
    assert read_jsonl(run / "samples.jsonl")[0]["prompt"].startswith(head)
