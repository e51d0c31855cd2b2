"""Tasks: loaders, procedural generators, non-overlapping splits, prompts."""

import collections
import json
import re

import pytest

from rlscale.arith import ARITH_PRESETS, ArithConfig, arith_problems, parse_arith_spec
from rlscale.errors import UserError
from rlscale.tasks import (
    STOP_STRINGS,
    Problem,
    corpus_texts,
    fewshot_exemplars,
    format_prompt,
    format_solution,
    gsm_symbolic_problems,
    load_task,
    normalize_question,
    split_train_test,
)

GSM_ROWS = [
    {"question": f"Tom has {i} apples and buys 2. How many?",
     "answer": f"He has {i} + 2 = {i + 2} apples.\n#### {i + 2:,}"} for i in range(40)
]
MATH_ROWS = [
    {"problem": f"Compute $\\frac{{{i}}}{{2}}$.",
     "solution": f"We get $\\boxed{{\\frac{{{i}}}{{2}}}}$."} for i in range(1, 30)
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def no_overlap(task):
    train = {normalize_question(p.question) for p in task.train}
    test = [normalize_question(p.question) for p in task.test]
    return not train & set(test) and len(test) == len(set(test))


def test_normalize_question():
    assert normalize_question("  Tom has 3 Apples!\n How   many?") == "tom has 3 apples how many"
    assert normalize_question("Tom has 3 apples. How many?") == normalize_question(
        "tom HAS 3 apples how many")


# ------------------------------------------------ files
def test_gsm8k_jsonl(tmp_path):
    task = load_task(str(write_jsonl(tmp_path / "g.jsonl", GSM_ROWS)), n_test=8)
    assert task.answer_format == "gsm" and len(task.test) == 8 and len(task.train) == 32
    p = next(p for p in task.train + task.test if p.question.startswith("Tom has 3 "))
    assert p.answer == "5" and p.solution.endswith("#### 5")
    big = next(p for p in task.train + task.test if p.question.startswith("Tom has 39 "))
    assert big.answer == "41"
    assert no_overlap(task)


def test_math_jsonl_and_json_and_parquet_agree(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = load_task(str(write_jsonl(tmp_path / "m.jsonl", MATH_ROWS)), n_test=5)
    (tmp_path / "m.json").write_text(json.dumps(MATH_ROWS))
    b = load_task(str(tmp_path / "m.json"), n_test=5)
    pq.write_table(pa.Table.from_pylist(MATH_ROWS), tmp_path / "m.parquet")
    c = load_task(str(tmp_path / "m.parquet"), n_test=5)
    assert a.answer_format == "boxed" and a.test == b.test == c.test and a.train == c.train
    p = next(p for p in a.train + a.test if "{3}" in p.question)
    assert p.answer == r"\frac{3}{2}"


def test_task_directory_uses_its_splits(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", GSM_ROWS[:30] + GSM_ROWS[35:36])
    write_jsonl(tmp_path / "test.jsonl", GSM_ROWS[30:40])
    task = load_task(str(tmp_path))
    assert len(task.test) == 10 and len(task.train) == 30  # the leaked row 35 is dropped
    assert no_overlap(task)


def test_file_split_dedupes_near_duplicates(tmp_path):
    rows = GSM_ROWS + [{"question": r["question"].upper().replace("?", " ? "),
                        "answer": r["answer"]} for r in GSM_ROWS]
    task = load_task(str(write_jsonl(tmp_path / "d.jsonl", rows)), n_test=10)
    assert no_overlap(task) and len(task.train) + len(task.test) == 40


def test_file_split_is_fixed_and_seed_shuffles_train(tmp_path):
    path = str(write_jsonl(tmp_path / "g.jsonl", GSM_ROWS))
    a, b = load_task(path, seed=0, n_test=8), load_task(path, seed=1, n_test=8)
    assert a.test == b.test and a.train != b.train and set(a.train) == set(b.train)
    assert load_task(path, seed=0, n_test=8).train == a.train
    assert load_task(path, seed=0, n_test=12).test[:8] == a.test  # prefix of a larger split


@pytest.mark.parametrize("content, where", [
    ('{"question": "q", "answer": "#### 1"}\n{"question": "q2", "answer": \n', "b.jsonl:2:"),
    ('{"question": "q", "answer": "#### 1"}\n{"question": "q2"}\n', "b.jsonl:2: field 'answer'"),
    ('{"question": "q", "answer": "#### "}\n', "b.jsonl:1: field 'answer'"),
    ('{"problem": "p", "solution": "no box"}\n', "b.jsonl:1: field 'solution'"),
    ('{"text": "x"}\n', "b.jsonl:1: expected fields"),
    ('[1, 2]\n', "b.jsonl:1: expected an object"),
    ('{"question": "q", "answer": "#### 1"}\n{"problem": "p", "solution": "\\\\boxed{1}"}\n',
     "b.jsonl:2: mixes"),
    ("", "b.jsonl: no problems"),
])
def test_malformed_file_names_file_and_line(tmp_path, content, where):
    (tmp_path / "b.jsonl").write_text(content)
    with pytest.raises(UserError, match=re.escape(where)):
        load_task(str(tmp_path / "b.jsonl"))


def test_malformed_parquet_and_paths(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"question": "q", "answer": "1"},
                                         {"question": "", "answer": "2"}]), tmp_path / "p.parquet")
    with pytest.raises(UserError, match=r"p\.parquet:row 2: field 'question'"):
        load_task(str(tmp_path / "p.parquet"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="junk.parquet: not a readable Parquet"):
        load_task(str(tmp_path / "junk.parquet"))
    with pytest.raises(UserError, match="no such file"):
        load_task(str(tmp_path / "missing.jsonl"))
    with pytest.raises(UserError, match="unknown task"):
        load_task("nonsense")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="unknown data file type"):
        load_task(str(tmp_path / "x.csv"))


def test_hf_names(monkeypatch):
    """No network in tests: `datasets.load_dataset` is replaced (or absent)."""
    import sys
    import types

    fake = types.ModuleType("datasets")

    def offline(repo, config):
        raise ConnectionError("offline")

    fake.load_dataset = offline
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(UserError, match="cannot load openai/gsm8k"):
        load_task("gsm8k")
    fake.load_dataset = lambda repo, config: {"train": GSM_ROWS[:30], "test": GSM_ROWS[30:]}
    task = load_task("gsm8k")
    assert len(task.test) == 10 and len(task.train) == 30 and task.answer_format == "gsm"
    fake.load_dataset = lambda repo, config: {"train": MATH_ROWS[:20], "test": MATH_ROWS[20:]}
    assert load_task("math", n_test=4).answer_format == "boxed"
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(UserError, match="datasets"):
        load_task("gsm8k")


# ------------------------------------------------ procedural
def lexicon_values(cfg: ArithConfig) -> dict[str, int]:
    from rlscale.arith import lexicon

    words, values, _ = lexicon(cfg.lexicon, cfg.lexicon_max, cfg.lexicon_zipf)
    return dict(zip(words, values))


def check_arith(p: Problem, cfg: ArithConfig):
    lines = p.solution.split("\n")
    assert lines[-1] == f"#### {p.answer}"
    steps = lines[:-1]
    assert cfg.min_terms - 1 <= len(steps) <= cfg.max_terms - 1
    prev = None
    story = p.question.split(". ")[1:]  # the step sentences (then the question)
    for k, line in enumerate(steps):
        if cfg.quote:  # "He sells 4: 9 - 4 = 5", "9 - 4 * 2: 9 - 4 = 5"
            said, line = line.split(": ")
            if p.question.startswith("What is "):  # the expression left starts with the step
                assert said.lstrip("(").startswith(line.split(" =")[0])
                assert k or f"What is {said}?" == p.question
            else:  # the step's own sentence, whose one number is the operand of the step
                assert story[k] == said
                words = [w for w in said.split() if w in lexicon_values(cfg)]
                said_as = [str(lexicon_values(cfg)[w]) for w in words] or re.findall(r"\d+", said)
                assert said_as == [line.split()[2]]  # its one number, or number-word
        a, op, b, eq, c = line.split()
        a, b, c = int(a), int(b), int(c)
        assert eq == "=" and op in cfg.ops and prev in (None, a)
        assert c == {"+": a + b, "-": a - b, "*": a * b}[op]
        assert 0 <= a <= cfg.max_value and 0 <= c <= cfg.max_value
        prev = c
    assert str(prev) == p.answer


@pytest.mark.parametrize("preset", list(ARITH_PRESETS))
def test_arith_presets_are_correct_and_within_knobs(preset):
    cfg = ARITH_PRESETS[preset]
    for p in arith_problems(300, seed=1, cfg=cfg):
        check_arith(p, cfg)


def test_arith_expr_style_and_spec_parsing():
    cfg = parse_arith_spec("arith:hard,style=expr,max_value=30")
    assert cfg.style == "expr" and cfg.max_value == 30 and cfg.ops == "+-*"
    for p in arith_problems(200, seed=2, cfg=cfg):
        check_arith(p, cfg)
        assert p.question.startswith("What is ")
    assert parse_arith_spec("arith") == ARITH_PRESETS["medium"]
    assert parse_arith_spec("arith:easy") == ARITH_PRESETS["easy"]
    for bad in ["arith:extreme", "arith:foo=1", "arith:max_value=x", "arith:ops=/",
                "arith:min_terms=1", "arith:style=poem", "arith:expr_share=1.5",
                "arith:expr_share=nan", "arith:expr_share=x"]:
        with pytest.raises(UserError, match="arith"):
            parse_arith_spec(bad)


@pytest.mark.parametrize("spec", ["arith", "arith:easy", "arith:hard", "arith:ladder"])
def test_procedural_split_never_overlaps_and_is_fixed(spec):
    a = load_task(spec, seed=0, n_test=300, n_train=3000)
    b = load_task(spec, seed=1, n_test=100, n_train=3000)
    assert len(a.test) == 300 and len(a.train) == 3000
    assert a.test[:100] == b.test  # the held-out set does not move with seed or size
    assert a.train != b.train
    assert no_overlap(a) and no_overlap(b)
    # no seed's train stream can ever hold a test question
    test = {normalize_question(p.question) for p in a.test}
    assert not test & {normalize_question(p.question) for p in b.train}
    assert load_task(spec, seed=0, n_test=300, n_train=3000).train == a.train  # deterministic
    # a 0-shot eval draws no train side (rlscale.evaluate): its held-out problems are the same
    assert load_task(spec, seed=0, n_test=300, n_train=0).test == a.test


def test_validation_heldout_is_drawn_like_the_test_and_keeps_the_train_split():
    test = load_task("arith:ladder", seed=0, n_test=400, n_train=3000)
    val = load_task("arith:ladder,heldout=validation", seed=0, n_test=400, n_train=3000)
    assert val.train == test.train  # same prompts and corpus: only the held-out side moves
    assert no_overlap(val) and len(val.test) == 400
    assert val.test[:100] == load_task("arith:ladder, heldout = validation", seed=3,
                                       n_test=100, n_train=10).test  # fixed, a prefix
    keys = {normalize_question(p.question) for p in test.test}
    shared = sum(normalize_question(p.question) in keys for p in val.test)
    assert shared < 80  # another stream: only frequent problems recur in both
    # drawn as the test is: the same mix of styles and levels, up to sampling noise
    for key in (lambda p: p.question.startswith("What is"), lambda p: p.level):
        a = collections.Counter(map(key, test.test))
        b = collections.Counter(map(key, val.test))
        assert all(abs(a[k] - b[k]) < 60 for k in a | b), (a, b)
    assert load_task("arith:heldout=test", seed=0, n_test=50, n_train=10).test == \
        load_task("arith", seed=0, n_test=50, n_train=10).test
    assert load_task("gsm_symbolic:heldout=validation", seed=0, n_test=20,
                     n_train=20).test != load_task("gsm_symbolic", seed=0, n_test=20,
                                                   n_train=20).test
    with pytest.raises(UserError, match="heldout must be one of test, validation"):
        load_task("arith:ladder,heldout=dev", seed=0, n_test=10, n_train=10)


def test_levels_are_steps_and_span_the_spectrum():
    cfg = ARITH_PRESETS["ladder"]
    probs = arith_problems(3000, seed=4, cfg=cfg)
    for p in probs:
        check_arith(p, cfg)
        assert p.level == p.solution.count("\n")  # one line per step, then "#### N"
    counts = collections.Counter(p.level for p in probs)
    levels = range(cfg.min_terms - 1, cfg.max_terms)
    assert set(counts) == set(levels)
    assert min(counts.values()) > 0.5 * len(probs) / len(levels)  # every level well represented
    styles = collections.Counter(p.question.startswith("What is ") for p in probs)
    assert min(styles.values()) > 0.4 * len(probs)  # stories and expressions mixed
    ops = {line.split(": ")[-1].split()[1] for p in probs for line in p.solution.split("\n")[:-1]}
    assert ops == {"+", "-", "*"}
    assert max(int(p.answer) for p in probs) > 0.9 * cfg.max_value  # two-digit numbers
    assert arith_problems(50, seed=4, cfg=cfg) == probs[:50]  # deterministic


def test_quoted_solutions_restate_each_sentence_and_draw_the_same_problems():
    quoted = arith_problems(400, seed=3, cfg=ARITH_PRESETS["ladder"])
    plain = arith_problems(400, seed=3, cfg=parse_arith_spec("arith:ladder,quote=0"))
    assert [p.question for p in quoted] == [p.question for p in plain]  # same draws
    for q, p in zip(quoted, plain):  # removing the quotes gives the plain chain
        assert [x.split(": ")[-1] for x in q.solution.split("\n")] == p.solution.split("\n")
        assert all(": " in x for x in q.solution.split("\n")[:-1])
    expr = next(p for p in quoted if "(" in p.question and p.level == 4)
    lines = expr.solution.split("\n")  # the expression left shrinks by one operation a line
    assert lines[0].split(": ")[0] == expr.question.removeprefix("What is ").removesuffix("?")
    assert lines[3].split(": ")[0] == lines[3].split(": ")[1].split(" =")[0]  # the last: a op b
    assert parse_arith_spec("arith:ladder,quote=false").quote is False
    assert parse_arith_spec("arith:easy,quote=1").quote is True
    with pytest.raises(UserError, match="quote must be 1/0"):
        parse_arith_spec("arith:ladder,quote=maybe")


def test_quote_start_restates_a_storys_first_sentence_and_nothing_else():
    spec = "arith:ladder,lexicon=50"
    plain = arith_problems(300, seed=3, cfg=parse_arith_spec(spec))
    quoted = arith_problems(300, seed=3, cfg=parse_arith_spec(spec + ",quote_start=1"))
    stories = 0
    for q, p in zip(quoted, plain):
        assert (q.question, q.answer, q.level) == (p.question, p.answer, p.level)  # same draws
        if p.question.startswith("What is "):
            assert q.solution == p.solution  # expressions restate their start already
            continue
        stories += 1
        first, rest = q.solution.split("\n", 1)
        assert first == p.question.split(". ")[0] + "." and rest == p.solution
        assert first.split()[2] == p.solution.split(": ")[1].split()[0]  # its start, in digits
    assert stories > 100


def test_zipf_draws_from_cached_weights_are_random_choices_own():
    """arith._draw keeps the cumulative weights random.choices would build from v^-zipf: the
    same draw for every range and exponent (the tasks' problems did not move with it)."""
    import random

    from rlscale.arith import _draw

    for case in range(300):
        pick = random.Random(case)
        lo, z = pick.randint(1, 5), pick.choice((0.5, 1.0, 1.5, 2.0))
        hi = lo + pick.randint(0, 120)
        got = [_draw(random.Random(case), lo, hi, z) for _ in range(2)]
        rng = random.Random(case)
        want = rng.choices(range(lo, hi + 1), weights=[v ** -z for v in range(lo, hi + 1)])[0]
        assert got == [want, want]


def test_zipf_makes_small_numbers_common_and_keeps_chains_correct():
    uniform = parse_arith_spec("arith:ladder,max_value=40,zipf=0")
    skewed = parse_arith_spec("arith:ladder,max_value=40,zipf=1")
    assert skewed.zipf == 1.0 and uniform.zipf == 0.0
    operands = {}
    for name, cfg in (("uniform", uniform), ("zipf", skewed)):
        probs = arith_problems(1500, seed=5, cfg=cfg)
        for p in probs:
            check_arith(p, cfg)
        operands[name] = [int(line.split(": ")[-1].split()[2]) for p in probs
                          for line in p.solution.split("\n")[:-1]]
    share = {k: sum(b <= 3 for b in v) / len(v) for k, v in operands.items()}
    assert share["zipf"] > 1.5 * share["uniform"]  # the head: small operands are common
    assert max(operands["zipf"]) > 30  # and the tail still reaches large ones
    # zipf=0 draws the problems of the uniform generator of earlier versions (pinned)
    first = arith_problems(1, seed=7, cfg=parse_arith_spec("arith:ladder,max_value=20,zipf=0"))
    assert first[0].question == ("Eva has 12 apples. She sells 11. She gets 3 more. "
                                 "How many apples does Eva have now?")
    for bad in ("arith:zipf=-1", "arith:zipf=9", "arith:zipf=x", "arith:zipf=1,max_value=5000"):
        with pytest.raises(UserError, match="zipf"):
            parse_arith_spec(bad)


def test_expr_share_sets_the_mix_of_styles():
    from rlscale.arith import question_style

    for share in (0.0, 0.3, 1.0):
        cfg = parse_arith_spec(f"arith:ladder,expr_share={share}")
        styles = [question_style(p.question) for p in arith_problems(2000, seed=1, cfg=cfg)]
        assert abs(styles.count("expr") / len(styles) - share) < 0.04
    # the default share draws the problems of earlier versions (held-out sets do not move)
    first = arith_problems(2, seed=2, cfg=parse_arith_spec("arith:ladder,max_value=30,zipf=0,"
                                                           "expr_share=0.5"))
    assert [p.question for p in first] == [
        "What is 29 + 1?",
        "Sam has 28 shells. He sells 9. He finds 10 more. How many shells does Sam have now?"]


def test_expr_max_terms_caps_only_the_expressions():
    from rlscale.arith import question_style

    spec = "arith:ladder,max_value=99,zipf=1.5,max_terms=6"
    capped = arith_problems(3000, seed=4, cfg=parse_arith_spec(spec + ",expr_max_terms=5"))
    levels = {s: {p.level for p in capped if question_style(p.question) == s}
              for s in ("expr", "words")}
    assert levels == {"expr": {1, 2, 3, 4}, "words": {1, 2, 3, 4, 5}}
    exprs = [p.level for p in capped if question_style(p.question) == "expr"]
    assert min(exprs.count(lv) for lv in (3, 4)) > 0.2 * len(exprs)  # uniform up to the cap
    # 0 (the default) draws exactly the problems of earlier versions
    assert arith_problems(50, seed=4, cfg=parse_arith_spec(spec)) == arith_problems(
        50, seed=4, cfg=parse_arith_spec(spec + ",expr_max_terms=0"))
    for bad in ("arith:ladder,expr_max_terms=1", "arith:ladder,expr_max_terms=9"):
        with pytest.raises(UserError, match="expr_max_terms"):
            parse_arith_spec(bad)


def test_expressions_can_be_drawn_easier_than_the_stories():
    import re

    from rlscale.arith import question_style

    spec = "arith:ladder,max_value=99,zipf=1.5"
    cfg = parse_arith_spec(spec + ",expr_max_value=20,expr_zipf=1,expr_max_terms=4")
    probs = arith_problems(2000, seed=1, cfg=cfg)
    top = lambda ps: max(int(x) for p in ps for x in re.findall(r"\d+", p.solution))  # noqa: E731
    ex = [p for p in probs if question_style(p.question) == "expr"]
    st = [p for p in probs if question_style(p.question) == "words"]
    assert top(ex) <= 20 < top(st) <= 99 and {p.level for p in ex} == {1, 2, 3}
    assert abs(len(ex) / len(probs) - 0.5) < 0.05  # the styles' mix is unchanged
    # unset (0, -1) they draw exactly the problems of earlier versions
    assert arith_problems(50, seed=1, cfg=parse_arith_spec(spec)) == arith_problems(
        50, seed=1, cfg=parse_arith_spec(spec + ",expr_max_value=0,expr_zipf=-1"))
    for bad in ("arith:ladder,expr_max_value=1", "arith:ladder,expr_max_value=41",
                "arith:ladder,expr_zipf=5"):
        with pytest.raises(UserError, match="expr_"):
            parse_arith_spec(bad)


def test_expr_above_draws_expressions_past_a_range():
    """A transfer family past the numbers a task's expressions had (session 27): every
    expression holds a number above the bound, the levels keep their cap, the arithmetic holds;
    unset, the problems of earlier versions."""
    import re

    base = "arith:ladder,max_value=99,zipf=1.5,expr_max_value=99,expr_zipf=1.5,expr_max_terms=4"
    cfg = parse_arith_spec(base + ",style=expr,expr_above=20")
    probs = arith_problems(1000, seed=3, cfg=cfg)
    for p in probs:
        check_arith(p, cfg)
        assert max(int(x) for x in re.findall(r"\d+", p.solution)) > 20
    assert {p.level for p in probs} == {1, 2, 3}
    train = parse_arith_spec("arith:ladder,max_value=99,zipf=1.5,expr_max_value=20,"
                             "expr_zipf=1,expr_max_terms=4")
    ex = {p.question for p in arith_problems(3000, seed=1, cfg=train) if p.question.startswith(
        "What is")}
    assert ex and not ex & {p.question for p in probs}  # disjoint from the 20-bound expressions
    assert arith_problems(50, seed=1, cfg=parse_arith_spec(base)) == arith_problems(
        50, seed=1, cfg=parse_arith_spec(base + ",expr_above=0"))
    for bad in ("expr_above=-1", "expr_above=99", "expr_max_value=20,expr_above=20"):
        with pytest.raises(UserError, match="expr_above"):
            parse_arith_spec(f"arith:ladder,max_value=99,{bad}")


def test_lexicon_says_story_operands_as_number_words_with_a_zipf_tail():
    from rlscale.arith import _RESERVED, lexicon, question_style

    spec = "arith:ladder,max_value=99,zipf=1.5,expr_max_value=20,expr_zipf=1,expr_max_terms=4"
    cfg = parse_arith_spec(spec + ",lexicon=300")
    probs = arith_problems(4000, seed=2, cfg=cfg)
    for p in probs:  # every step's arithmetic holds, each word said as its one value
        check_arith(p, cfg)
    words, values, _ = lexicon(300, 20, 1.0)
    assert len(set(words)) == 300 and not set(words) & _RESERVED  # never "more" or "gets"
    assert all(2 <= v <= 20 for v in values)
    assert lexicon(50, 20, 1.0)[0] == words[:50]  # one fixed draw: lists nest
    from rlscale.arith import number_word  # reads the word back out of a step's sentence

    for p in probs:
        for line in p.solution.split("\n")[:-1]:
            said, eq = line.split(": ")
            w = number_word(said)
            assert w is None or (w in set(words) and values[words.index(w)] == int(eq.split()[2]))
    assert number_word("She gets 4 more") is None and number_word("kavo") is None
    seen = collections.Counter(w for p in probs for w in re.findall(r"[a-z]+", p.question)
                               if w in set(words))
    assert not any(w in set(words) for p in probs if question_style(p.question) == "expr"
                   for w in re.findall(r"[a-z]+", p.question))  # stories only
    rank = {w: i for i, w in enumerate(words)}
    head = sum(n for w, n in seen.items() if rank[w] < 10)
    tail = sum(n for w, n in seen.items() if rank[w] >= 100)
    assert head > tail / 3 and tail > 0 and seen[words[0]] > 5 * seen[words[99]]  # ~1/r
    # without a lexicon the problems are those of earlier versions
    assert arith_problems(50, seed=2, cfg=parse_arith_spec(spec)) == arith_problems(
        50, seed=2, cfg=parse_arith_spec(spec + ",lexicon=0"))
    # the share of + and - story steps said as words follows lexicon_share
    for share, lo, hi in ((0.0, 0.0, 0.0), (1.0, 0.6, 1.0)):
        c = parse_arith_spec(spec + f",lexicon=300,lexicon_share={share}")
        steps = [s for p in arith_problems(1000, seed=2, cfg=c) if question_style(p.question)
                 == "words" for s in p.solution.split("\n")[:-1] if "times" not in s]
        said = sum(any(w in set(words) for w in s.split(": ")[0].split()) for s in steps)
        assert lo <= said / len(steps) <= hi
    for bad in ("lexicon=-1", "lexicon_share=2", "lexicon=9,lexicon_zipf=9",
                "lexicon=9,lexicon_max=1", "lexicon=9,lexicon_max=500"):
        with pytest.raises(UserError, match="lexicon"):
            parse_arith_spec(f"arith:ladder,{bad}")


def test_transfer_family_is_disjoint_from_the_main_task():
    from rlscale.study import PRESETS

    for preset in PRESETS.values():
        transfer = getattr(preset, "transfer_task", "")
        if not transfer:
            continue
        main = load_task(preset.task, n_test=50, n_train=500)
        other = load_task(transfer, n_test=50, n_train=100)
        main_levels = {p.level for p in main.train + main.test}
        assert other.test and not {p.level for p in other.test} & main_levels, preset.name
        qs = {normalize_question(p.question) for p in main.train + main.test}
        assert not qs & {normalize_question(p.question) for p in other.test}
        exact = {p.question for p in main.train + main.test}
        for fid, spec in preset.transfer_more:  # further families: no question of the task's
            more = load_task(spec, n_test=200, n_train=100)  # (exactly: the dedupe key drops
            assert more.test and not exact & {p.question for p in more.test}, fid  # operators)


def test_tiny_problem_space_is_a_clear_error():
    with pytest.raises(UserError, match="too small"):
        load_task("arith:max_value=3,max_terms=2", n_test=5000, n_train=10)


def test_gsm_symbolic():
    probs = gsm_symbolic_problems(40, seed=3)
    assert probs == gsm_symbolic_problems(40, seed=3)
    for p in probs:
        assert p.solution.endswith(f"\n#### {p.answer}")
        assert "Give the result as your final answer" not in p.question
    task = load_task("gsm_symbolic", n_test=50, n_train=200)
    assert no_overlap(task) and task.answer_format == "gsm"


# ------------------------------------------------ prompts
def test_prompt_format():
    ex = [Problem("What is 1 + 1?", "2", "1 + 1 = 2\n#### 2"), Problem("Q2?", "3")]
    p = Problem("What is 2 + 5?", "7", "2 + 5 = 7\n#### 7")
    assert format_prompt(p) == "Question: What is 2 + 5?\nAnswer:"
    assert format_solution(p) == " 2 + 5 = 7\n#### 7"
    assert format_solution(ex[1]) == " #### 3"  # answer-only problems
    assert format_prompt(p, ex) == ("Question: What is 1 + 1?\nAnswer: 1 + 1 = 2\n#### 2\n\n"
                                    "Question: Q2?\nAnswer: #### 3\n\n"
                                    "Question: What is 2 + 5?\nAnswer:")
    assert any(s in "\n\nQuestion: next" for s in STOP_STRINGS)


def test_fewshot_exemplars_from_train_only():
    task = load_task("arith", n_test=50, n_train=500)
    train_set = set(task.train)
    for k in range(6):
        ex = fewshot_exemplars(task.train, k, seed=7)
        assert len(ex) == k and set(ex) <= train_set and len(set(ex)) == k
        assert ex == fewshot_exemplars(task.train, k, seed=7)
    assert fewshot_exemplars(task.train, 5, 1) != fewshot_exemplars(task.train, 5, 2)
    with pytest.raises(UserError):
        fewshot_exemplars(task.train, -1, 0)


def test_corpus_texts():
    docs = corpus_texts(300, seed=0)
    assert len(docs) == 300 and docs == corpus_texts(300, seed=0)
    assert all(d.startswith("Question: ") and "\nAnswer: " in d and "\n#### " in d for d in docs)
    test = {normalize_question(p.question) for p in load_task("arith").test}
    qs = {normalize_question(d.split("\nAnswer:")[0].removeprefix("Question: ")) for d in docs}
    assert not qs & test


def test_split_train_test_given_test():
    probs = [Problem(f"q{i}", str(i)) for i in range(10)]
    train, test = split_train_test(probs, None, seed=0, test=probs[:3] + [Problem("Q0!", "0")])
    assert len(test) == 3 and len(train) == 7


def test_level_round_trips_through_task_files(tmp_path):
    rows = [dict(r, level=i % 3 + 1) for i, r in enumerate(GSM_ROWS)]
    rows[0]["level"] = None
    task = load_task(str(write_jsonl(tmp_path / "g.jsonl", rows)), n_test=8)
    by_q = {p.question: p.level for p in task.train + task.test}
    assert by_q[GSM_ROWS[0]["question"]] is None and by_q[GSM_ROWS[1]["question"]] == 2
    assert all(p.level is None for p in load_task(
        str(write_jsonl(tmp_path / "plain.jsonl", GSM_ROWS)), n_test=8).test)
    for bad in ("2", 1.5, True):
        write_jsonl(tmp_path / "bad.jsonl", [dict(GSM_ROWS[0], level=bad)] + GSM_ROWS[1:])
        with pytest.raises(UserError, match=r"bad.jsonl:1: field 'level'"):
            load_task(str(tmp_path / "bad.jsonl"))
