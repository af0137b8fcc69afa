"""rich tables that never cut what people copy: identifiers (record names, run ids, log paths,
digests) keep their whole text on one line; other text wraps at word boundaries; when the
terminal is too narrow for that, whole columns are left out (least useful first) and the
caller is told which, so it can say their content another way. at 80 columns (a pipe, a CI
log) a run id stays pasteable into `nanopoor reproduce`."""
from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

BORDER = 3          # per column: a space either side and one rule
EDGE = 1            # the table's closing rule
READABLE = 12       # a wrapping column narrower than this reads as fragments, not words


@dataclass
class Col:
    header: str
    ident: bool = False      # an identifier: whole, one line, never cut
    wrap: bool = False       # prose that may wrap at spaces (else kept on one line: numbers, short words)
    drop: int = 0            # 0: always shown; when the width is short the highest drop goes first
    justify: str = "left"


def cell_width(text: str) -> int:
    return max((Text.from_markup(line).cell_len for line in str(text).split("\n")), default=0)


def _words(text: str) -> int:
    return max((Text.from_markup(w).cell_len for w in str(text).split()), default=0)


def _need(col: Col, values: list[str], readable: int = READABLE) -> int:
    """the narrowest this column may become and still be read."""
    whole = max([cell_width(col.header)] + [cell_width(v) for v in values])
    if col.ident or not col.wrap:
        return whole
    longest_word = max([_words(col.header)] + [_words(v) for v in values])
    return min(whole, max(longest_word, readable))


def fit(cols: list[Col], rows: list[list[str]], width: int) -> tuple[list[int], list[int]]:
    """(the indexes of the columns that fit in `width`, each column's narrowest width): columns
    with the highest `drop` are left out first; when nothing more can go, wrapping columns may
    narrow to their longest word."""
    keep = list(range(len(cols)))
    needs = [_need(c, [r[i] for r in rows]) for i, c in enumerate(cols)]

    def total(idx):
        return sum(needs[i] + BORDER for i in idx) + EDGE

    while total(keep) > width:
        droppable = [i for i in keep if cols[i].drop > 0]
        if not droppable:
            needs = [_need(c, [r[i] for r in rows], readable=0) for i, c in enumerate(cols)]
            break
        keep.remove(max(droppable, key=lambda i: (cols[i].drop, i)))
    return keep, needs


class RowLines:
    """the rows as lines, for a terminal narrower than the identifiers themselves: the row's
    values apart by two spaces, each line written whole (the terminal wraps it, so a copied
    identifier is still one piece)."""

    def __init__(self, cols: list[Col], rows: list[list[str]], title: str | None = None):
        self.cols, self.rows, self.title = cols, rows, title

    def __rich_console__(self, console, options):
        from rich.segment import Segment

        if self.title:
            yield Segment(self.title)
            yield Segment.line()
        yield Segment("  ".join(c.header for c in self.cols), console.get_style("bold"))
        yield Segment.line()
        for row in self.rows:
            yield Segment("  ".join(Text.from_markup(str(v)).plain.replace("\n", "; ") for v in row))
            yield Segment.line()


def fitted_table(cols: list[Col], rows: list[list[str]], width: int, **table_kw) -> tuple[Table | RowLines, list[Col]]:
    """a Table of the columns that fit (fit()), identifiers at their full width, and the columns
    left out; when even the identifiers and the columns that always show do not fit, the rows
    as whole lines (RowLines) instead of a table that would cut them."""
    keep, needs = fit(cols, rows, width)
    if sum(needs[i] + BORDER for i in keep) + EDGE > width and any(cols[i].ident for i in keep):
        return RowLines([cols[i] for i in keep], [[r[i] for i in keep] for r in rows], table_kw.get("title")), \
            [cols[i] for i in range(len(cols)) if i not in keep]
    table = Table(**table_kw)
    for i in keep:
        c = cols[i]
        table.add_column(c.header, justify=c.justify, no_wrap=c.ident or not c.wrap, overflow="fold", min_width=needs[i])
    for r in rows:
        table.add_row(*(r[i] for i in keep))
    return table, [cols[i] for i in range(len(cols)) if i not in keep]


def left_out_lines(cols: list[Col], rows: list[list[str]], left_out: list[Col], key: int = 0) -> list[str]:
    """what the left-out columns held, one line per row: '<row's key>: <header> <value>, ...'."""
    idx = [cols.index(c) for c in left_out]
    return [f"{row[key]}: " + ", ".join(f"{cols[i].header} {row[i]}" for i in idx)
            for row in rows if any(str(row[i]).strip() for i in idx)]
