"""What the copy readings compare with a story's start (rlscale.arith.story_start): a
completion's first worked step.

One home for copy_screen.copy_stats, start_digits and fewshot_split (the review of session 40
found four parsers of the same fact; copy_probe.story_case reads the start with story_start). A
story's first worked step should begin from the question's start: a draw whose copy is
incomplete writes another number there (docs/study.md, sessions 37-40).
"""
from rlscale.chains import parse_step


def first_step(completion: str, any_line: bool = False) -> tuple[int, str, int, int] | None:
    """(a, op, b, c) of the completion's first line, or with any_line of its first line that is
    a worked step (a completion may open with a sentence); None where there is none."""
    lines = completion.strip().split("\n")
    if not any_line:
        return parse_step(lines[0])
    return next(filter(None, map(parse_step, lines)), None)
