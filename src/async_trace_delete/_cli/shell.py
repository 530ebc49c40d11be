"""Command lines printed the way a person types them, and parsed back by a POSIX shell to
exactly the same words.

``shlex.join`` writes a filter with single quotes as ``'status = '"'"'ERROR'"'"''``: right,
but unreadable. A word holding single quotes and nothing a double-quoted shell word expands
(``$``, a backtick, ``\\``, ``"``, ``!``) is written in double quotes instead:
``"status = 'ERROR'"``; every other word is ``shlex.quote``'d.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

__all__ = ["shell_join", "shell_quote"]

# Inside double quotes a POSIX shell still expands $, backticks and backslashes, ends the
# word at ", and an interactive bash expands ! from its history.
_EXPANDED_IN_DOUBLE_QUOTES = frozenset('$`\\"!')


def shell_quote(word: str) -> str:
    """One word, quoted for a POSIX shell (as a person would where it reads better)."""
    quoted = shlex.quote(word)
    if quoted != word and "'" in word and not _EXPANDED_IN_DOUBLE_QUOTES & set(word):
        return f'"{word}"'
    return quoted


def shell_join(words: Iterable[str]) -> str:
    """The words as one command line (``shlex.split`` gives them back)."""
    return " ".join(shell_quote(word) for word in words)
