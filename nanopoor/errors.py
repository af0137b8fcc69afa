"""one user-error type: the cli prints its message as one line and exits 1.

a message says what is wrong, what exists, and the command to run next."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """bad input from a person: shown as one line, exit code 1, no traceback."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
