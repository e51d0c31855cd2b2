"""Step-level diagnostics of worked chains (rlscale.chains): operand copied, arithmetic right,
expressions answered bare, on hand-written completions with known answers."""

import math

import pytest

from rlscale.arith import ARITH_PRESETS, arith_problems
from rlscale.chains import answer_styles, chain_stats, mean_stats, mean_styles

STORY = ("Tom has 14 cards. He gets 3 more. He sells 5. How many cards does Tom have now?")
EXPR = "What is (6 - 2) * 3?"


def row(question, completion, shots=0):
    return {"shots": shots, "question": question, "completions": [completion]}


def test_operands_and_arithmetic_are_told_apart():
    rows = [
        row(STORY, " He gets 3 more: 14 + 3 = 17\nHe sells 5: 17 - 5 = 12\n#### 12"),  # right
        row(STORY, " He gets 3 more: 14 + 4 = 18\nHe sells 5: 18 - 5 = 12\n#### 12"),  # 1 bad op
        row(EXPR, " (6 - 2) * 3: 6 - 2 = 4\n4 * 3: 4 * 3 = 13\n#### 13"),  # 1 bad product
        row(EXPR, " #### 12"),  # bare
        row(EXPR, " 6 - 2 = 4\n4 * 3 = 12\n#### 12"),  # unquoted chains parse alike
        row(STORY, " He gets 3 more: 14 + 3 = 17\n#### 17", shots=2),  # not 0-shot: skipped
    ]
    s = chain_stats(rows)
    assert s["problems"] == 5 and s["steps"] == 8
    assert s["bare_expr"] == pytest.approx(1 / 3)
    assert s["operand_right"] == pytest.approx(7 / 8)
    assert s["arithmetic_right"] == pytest.approx(6 / 8)  # 14 + 4 = 18 is right, 18 - 5 = 12 not
    assert s["stories_right"] is None and s["ceiling"] is None  # unscored rows: no accuracy


def test_accuracy_by_style_and_the_ceiling():
    scored = lambda q, c, ok, shots=0: {**row(q, c, shots), "scores": {  # noqa: E731
        "custom_flexible": [ok], "strict": [0.0]}}
    rows = [scored(STORY, " ... #### 12", 1.0), scored(STORY, " ... #### 11", 0.0),
            scored(STORY, " ... #### 9", 0.0), scored(EXPR, " #### 12", 1.0),
            scored(EXPR, " #### 7", 0.0), scored(EXPR, " #### 12", 1.0, shots=3)]
    s = chain_stats(rows)
    assert s["stories_right"] == pytest.approx(1 / 3) and s["expr_right"] == 0.5
    assert s["ceiling"] == pytest.approx((3 + 1) / 5)  # every story right, expressions as they are
    assert chain_stats(rows, check="strict")["ceiling"] == pytest.approx(3 / 5)
    m = mean_stats([s, chain_stats(rows[:3])])
    assert m["stories_right"] == pytest.approx(1 / 3) and m["ceiling"] == pytest.approx(0.9)


def test_accuracy_per_level_and_style_cell_and_its_table():
    from rlscale.report_text import level_style_table

    scored = lambda q, ok, level: {**row(q, " #### 1"), "level": level,  # noqa: E731
                                   "scores": {"custom_flexible": [ok]}}
    rows = [scored(STORY, 1.0, 2), scored(STORY, 0.0, 2), scored(EXPR, 1.0, 2),
            scored(STORY, 1.0, 10), scored(EXPR, 0.0, 1), row(EXPR, " #### 1")]  # unscored
    s = chain_stats(rows)
    assert s["cell_problems"] == {"level_2_words": 2, "level_2_expr": 1, "level_10_words": 1,
                                  "level_1_expr": 1}
    assert s["level_2_words"] == 0.5 and s["level_2_expr"] == 1.0 and s["level_1_expr"] == 0.0
    after = chain_stats([{**r, "scores": {"custom_flexible": [1.0]}} for r in rows[:5]])
    m = mean_stats([s, after])
    assert m["level_2_words"] == 0.75 and m["cell_problems"] == s["cell_problems"]
    table = level_style_table([{"rung": "micro:20k", "chains_before": s, "chains_after": m}])
    header, _, line = table[2:5]
    assert header == ("| rung | level 1 expressions (1) | level 2 stories (2) | level 2 "
                      "expressions (1) | level 10 stories (1) |")  # numeric order, stories first
    assert line == "| micro:20k | 0.00 -> 0.50 | 0.50 -> 0.75 | 1.00 -> 1.00 | 1.00 -> 1.00 |"
    assert level_style_table([{"rung": "micro:20k"}]) == []  # an older summary: no table


def test_the_task_s_own_solutions_are_all_right():
    probs = arith_problems(300, seed=5, cfg=ARITH_PRESETS["ladder"])
    s = chain_stats([row(p.question, " " + p.solution) for p in probs])
    assert s["operand_right"] == 1.0 and s["arithmetic_right"] == 1.0 and s["bare_expr"] == 0.0
    assert s["steps"] == sum(p.level for p in probs)


WORDS_TASK = "arith:ladder,max_value=99,zipf=1.5,expr_max_value=20,lexicon=1000"


def test_number_words_are_recalled_not_copied():
    """A story that says an operand as a number-word: the steps after it still align with the
    question's operands, and the word's step is judged by the lexicon's value (recall), apart
    from the digit operands (copying). The task's own solutions are right on every count."""
    from rlscale.arith import parse_arith_spec, question_operands, word_values

    words = word_values(WORDS_TASK)
    assert len(words) == 1000 and word_values("arith:ladder") == {} and word_values("gsm8k") == {}
    probs = arith_problems(400, seed=3, cfg=parse_arith_spec(WORDS_TASK))
    said = [p for p in probs if any(isinstance(x, str) for x in question_operands(p.question))]
    assert len(said) > 20  # the lexicon's stories are there
    s = chain_stats([row(p.question, " " + p.solution) for p in probs], words=words)
    assert s["operand_right"] == 1.0 and s["word_right"] == 1.0 and s["arithmetic_right"] == 1.0
    assert s["word_steps"] >= len(said)
    q = "Zoe has 2 shells. She finds finoba more. She sells 3. How many shells does Zoe have now?"
    assert question_operands(q) == [2, "finoba", 3]
    from rlscale.arith import story_start  # what a worked story's first step copies

    assert story_start(q) == 2 and story_start(q.replace(" 2 ", " 47 ")) == 47
    assert story_start("Zoe has finoba shells. She sells 3. How many now?") is None  # a word
    assert story_start("What is 12 + 3?") is None  # an expression has no story start
    v = words["finoba"]
    right = f" She finds finoba more: 2 + {v} = {2 + v}\nShe sells 3: {2 + v} - 3 = {v - 1}"
    wrong = f" She finds finoba more: 2 + {v + 1} = {3 + v}\nShe sells 3: {3 + v} - 3 = {v}"
    s = chain_stats([row(q, right), row(q, wrong)], words=words)
    assert s["word_steps"] == 2 and s["word_right"] == 0.5  # the second recalls a wrong value
    assert s["operand_right"] == 1.0 and s["arithmetic_right"] == 1.0  # "sells 3" copied in both
    assert chain_stats([row(q, right)])["word_right"] is None  # no lexicon given: not judged


def test_garbage_is_bounded_and_never_counted():
    rows = [row(STORY, "x" * 1_000_000), row(STORY, "1 + 1 = 2\n" * 10_000),
            row(STORY, " : : = = 3 +"), {"shots": 0, "question": STORY, "completions": []}]
    s = chain_stats(rows)
    assert s["steps"] == 64  # the line cap: a long completion cannot make the parse slow
    assert chain_stats([])["operand_right"] is None
    m = mean_stats([s, chain_stats([row(EXPR, " #### 12")])])
    assert m["bare_expr"] == 1.0 and m["steps"] == 64
    assert mean_stats([]) is None


def sampled(question, completions, scores, shots=0):
    return {"shots": shots, "question": question, "completions": completions,
            "scores": {"custom_flexible": scores}}


def test_answer_styles_count_worked_and_bare_samples_of_expressions():
    rows = [
        sampled(EXPR, [" #### 12", " #### 7", " 6 - 2 = 4\n4 * 3 = 12\n#### 12", " #### 12"],
                [1.0, 0.0, 1.0, 1.0]),
        sampled(EXPR, [" 6 - 2 = 4\n4 * 3 = 13\n#### 13", "  #### 9"], [0.0, 0.0]),
        sampled(STORY, [" #### 12", " #### 12"], [1.0, 1.0]),  # stories: not counted
        sampled(EXPR, [" #### 12"], [1.0], shots=3),  # not 0-shot: not counted
    ]
    s = answer_styles(rows)
    assert s["samples"] == 6 and s["worked_share"] == pytest.approx(2 / 6)
    assert s["right_worked"] == pytest.approx(1 / 2) and s["right_bare"] == pytest.approx(2 / 4)
    assert s["worked_advantage"] == pytest.approx(0.0)
    only_bare = answer_styles([sampled(EXPR, [" #### 12"], [1.0])])
    assert only_bare["right_worked"] is None and only_bare["worked_advantage"] is None
    assert answer_styles([])["worked_share"] is None
    m = mean_styles([s, only_bare])
    assert m["samples"] == 7 and m["right_bare"] == pytest.approx(0.75)
    assert m["worked_advantage"] == pytest.approx(0.0) and mean_styles([]) is None
    stories = answer_styles(rows, style="words")  # the same counts for the stories
    assert stories["samples"] == 2 and stories["worked_share"] == 0.0
    assert stories["right_bare"] == 1.0 and stories["worked_advantage"] is None


def test_story_style_table_shows_only_where_stories_are_answered_bare():
    from rlscale.report_text import story_style_table

    worked = {"worked_share": 1.0, "right_worked": 0.5, "right_bare": None,
              "worked_advantage": None}
    rows = [{"rung": "micro:20k", "story_answers_before": worked, "story_answers_after": worked}]
    assert story_style_table(rows) == []  # every story worked out: no table
    assert story_style_table([{"rung": "micro:20k"}]) == []  # an older summary: no table
    bare = {**worked, "worked_share": 0.7, "right_bare": 0.04, "worked_advantage": 0.46}
    table = story_style_table([{**rows[0], "story_answers_before": bare}])
    assert "| micro:20k | 0.700 -> 1.000 |" in "\n".join(table)


def test_accuracy_reads_first_zero_shot_completion_with_binomial_se():
    from rlscale.chains import accuracy

    rows = [{"shots": 0, "scores": {"custom_flexible": [1.0, 0.0]}},
            {"shots": 0, "scores": {"custom_flexible": [0.0, 1.0]}},
            {"shots": 0, "scores": {"custom_flexible": [1.0]}},
            {"shots": 0, "scores": {"custom_flexible": [1.0]}},
            {"shots": 3, "scores": {"custom_flexible": [0.0]}},  # k-shot rows are not 0-shot
            {"shots": 0, "scores": {"boxed": [1.0]}}]  # not scored by the check
    p, se, n = accuracy(rows)
    assert (p, n) == (0.75, 4) and abs(se - math.sqrt(0.75 * 0.25 / 4)) < 1e-12
    assert math.isnan(accuracy([])[0]) and accuracy([])[2] == 0


def test_parse_step_reads_quoted_and_bare_step_lines_only():
    from rlscale.chains import parse_step

    assert parse_step("He sells 4: 9 - 4 = 5") == (9, "-", 4, 5)
    assert parse_step("  6 * 2 = 12 ") == (6, "*", 2, 12)
    assert parse_step("#### 12") is None and parse_step("The answer is 5.") is None
    assert parse_step("1" * 500 + " + 1 = 2") is None  # bounded: only the first 200 characters
