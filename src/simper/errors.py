"""The one exception a user sees as a message instead of a traceback."""


class UserError(Exception):
    """Bad input from the user: a file, a row, a config value, a model path.

    The CLI prints ``simper: error: <message>`` on one line and exits with code 2. The message names
    what is wrong and where (file, line or row, field) and, where it can, what to do instead.
    """

    exit_code = 2


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): what a one-line
    error quotes of a library's multi-line one."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
