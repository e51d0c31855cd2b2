"""The one error type for bad user input.

Anything the user can get wrong (a file, a line of it, a column, a flag, a config field, a model
directory) raises UserError with a message that names it. The CLI prints the message as one line
and exits with code 2; no traceback, no partial output.
"""


class UserError(Exception):
    """Bad input from the user: printed as one line by the CLI, exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always a single line
