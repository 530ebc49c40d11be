"""The printed command: written as a person types it, parsed back by the shell to exactly the
words the user gave.

A filter with single quotes is printed in double quotes (``--filter "status = 'ERROR'"``)
unless the word holds something a double-quoted shell word expands (``$``, a backtick,
``\\``, ``"``, ``!``); every other word is ``shlex.quote``'d. ``shlex.split`` stands for the
POSIX shell.
"""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_trace_delete._cli.shell import shell_join, shell_quote
from tests.support.cli_harness import Recorder, cli

# Words that mix what a filter holds with every character a shell treats specially.
_SHELL_ALPHABET = st.sampled_from([*"ab =_-.,:/%@'\"$`\\!*?[]{}()<>|&;#~^\t\n", "é", "ü"])
_WORD = st.one_of(st.text(_SHELL_ALPHABET, max_size=30), st.text(max_size=20))


@settings(max_examples=600, deadline=None)
@given(st.lists(_WORD.filter(lambda word: "\x00" not in word), min_size=1, max_size=6))
def test_the_printed_command_parses_back_to_the_same_words(words: list[str]) -> None:
    """Any words, quoted and joined, split back to themselves."""
    assert shlex.split(shell_join(words)) == words


@settings(max_examples=300, deadline=None)
@given(st.text(_SHELL_ALPHABET, max_size=30).filter(lambda word: "'" in word))
def test_a_word_with_single_quotes_is_double_quoted_when_the_shell_would_not_expand_it(
    word: str,
) -> None:
    """Single quotes and nothing expandable: double quotes; otherwise shlex's quoting."""
    quoted = shell_quote(word)
    if set(word) & set('$`\\"!'):
        assert quoted == shlex.quote(word)
    else:
        assert quoted == f'"{word}"'


@pytest.mark.parametrize(
    ("word", "printed"),
    [
        ("status = 'ERROR'", "\"status = 'ERROR'\""),
        ("--filter=status = 'OK'", "\"--filter=status = 'OK'\""),
        ("tag.user = 'o''brien'", "\"tag.user = 'o''brien'\""),
        ('status = "ERROR"', "'status = \"ERROR\"'"),  # no single quote: shlex's own
        ("tag.cost = '$5'", "'tag.cost = '\"'\"'$5'\"'\"''"),  # $ would expand in "..."
        ("tag.x = 'a!'", "'tag.x = '\"'\"'a!'\"'\"''"),  # ! is history in bash
        ("7d", "7d"),
        ("", "''"),
    ],
)
def test_words_are_printed_as_a_person_writes_them(word: str, printed: str) -> None:
    """Examples of each rule, and that each parses back."""
    assert shell_quote(word) == printed
    assert shlex.split(printed) == [word]


def test_the_dry_run_prints_the_filter_in_double_quotes(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command to execute names the filter as typed, and the shell reads it back."""
    argv = ["delete", "--experiment-name", "alpha", "--older-than", "7d"]
    argv += ["--filter", "status = 'ERROR'"]
    result = cli(recorder, capsys, *argv)
    assert result.code == 0, result.err
    last = result.out.splitlines()[-1]
    expected = "async-trace-delete delete --experiment-name alpha --older-than 7d "
    assert last == expected + "--filter \"status = 'ERROR'\" --execute"
    assert shlex.split(last) == ["async-trace-delete", *argv, "--execute"]
    assert recorder.delete_calls == 0
