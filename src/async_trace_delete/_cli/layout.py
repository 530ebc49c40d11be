"""Tables that never lose a value: a table where it fits whole, else one block per row.

A rich table squeezed into a narrow terminal crops its cells (``2026-12-01 19:2``,
``big…``, ``20,…``). Here a table is drawn only when every column fits at its natural
width (the columns named as wrapping may wrap at their spaces); otherwise each row is
printed as a heading and indented ``key  value`` lines, which wrap at spaces and fold only
a word longer than the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

__all__ = ["fits", "print_block", "print_lines"]

_WRAPPED_AT_LEAST = 24  # a wrapping column narrower than this is hard to read


def fits(
    console: Console,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    wrapping: frozenset[str] = frozenset(),
) -> bool:
    """Whether a boxed table of these plain-text cells fits the console with no cell cut.

    Args:
        console: Where it would be drawn.
        headers: The column headers.
        rows: The cells, as they would be shown.
        wrapping: Headers of columns that may wrap at their spaces (counted at their
            longest word, or ``_WRAPPED_AT_LEAST``, whichever is wider, if that is less than
            their whole width).
    """
    total = 1  # the left border
    for index, header in enumerate(headers):
        cells = [header, *(row[index] for row in rows)]
        width = max(cell_len(cell) for cell in cells)
        if header in wrapping:
            words = max((cell_len(word) for cell in cells for word in cell.split()), default=0)
            width = min(width, max(words, _WRAPPED_AT_LEAST))
        total += width + 3  # a space each side and the border
    return total <= console.width


def print_block(console: Console, heading: str, pairs: Sequence[tuple[str, str]]) -> None:
    """``heading``, then one indented ``key  value`` line per pair (values wrap under
    themselves)."""
    console.print(Text(heading, overflow="fold"))
    grid = Table.grid(padding=(0, 2, 0, 0))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in pairs:
        grid.add_row(Text(key), Text(value, overflow="fold"))
    console.print(Padding(grid, (0, 0, 0, 2), expand=False))


def print_lines(console: Console, heading: str, lines: Sequence[str]) -> None:
    """``heading``, then each line indented (wrapping under itself)."""
    console.print(Text(heading, overflow="fold"))
    for line in lines:
        console.print(Padding(Text(line, overflow="fold"), (0, 0, 0, 2), expand=False))
