"""The rows of an export (loss combinations): which rows, in which order, and how they are shown.

Everything comes from the loss registry (:mod:`tuner.losses.registry`); no loss is named here.
A row is the set of losses that were on in a run, cosine-MSE included, joined with ``+`` in
registry order (``"<loss>+<loss>"``); ``zero_shot`` is the row of the model without fine-tuning.

**Rows rule** (:func:`matrix_rows`): the seed's rows come first, in the seed's order
(:data:`~tuner.losses.registry.SEED_ROWS`: zero-shot plus eight fine-tuning rows); every other
combination that holds a complete trial follows, ordered by
:func:`~tuner.losses.registry.row_sort_key` (number of losses, then registry order). So a study
whose trials all fall in the seed's rows (every seed grid) has exactly the seed's 9-row layout, and
a study that switches cosine-MSE on alongside others grows up to 16 rows with the four built-in
losses (zero-shot + 15 non-empty combinations); a registered loss adds its combinations the same way.
"""
from __future__ import annotations

from typing import Iterable

from tuner.losses.registry import (
    SEED_ROWS,
    ZERO_SHOT,
    canonical_row,
    loss_names,
    row_sort_key,
    row_style,
    row_title,
)

__all__ = ["SEED_ROWS", "ZERO_SHOT", "matrix_rows", "normalise", "rows_rule", "style", "title"]

#: Style of a row the registry does not know (an old export's label, a loss no longer registered).
UNKNOWN_STYLE = ("#7f7f7f", "o")


def matrix_rows(found: Iterable[str]) -> tuple[str, ...]:
    """The matrix rows for trials labelled ``found`` (canonical row labels): see the module docstring."""
    extra = sorted({row for row in found if row not in SEED_ROWS}, key=row_sort_key)
    return (*SEED_ROWS, *extra)


def rows_rule() -> str:
    """The rows rule in words, with the current registry's names (written to ``matrix.json``)."""
    return (f"the seed's {len(SEED_ROWS)} rows first, in the seed's order ({', '.join(SEED_ROWS)}); then every other "
            f"loss combination that has a complete trial, by number of losses, then registry order "
            f"({', '.join(loss_names())}). A trial's row is the set of losses that were on (weight > 0), "
            f"cosine-MSE included; a study whose trials all fall in the seed's rows has exactly the seed's layout")


def normalise(label: object) -> str:
    """A row label or title as exports and users spell it (any registered alias) -> the canonical row;
    a label the registry does not know is kept as written."""
    try:
        return canonical_row(str(label))
    except ValueError:
        return str(label)


def title(row: str) -> str:
    """Display title of a row (:func:`~tuner.losses.registry.row_title`); an unknown label is shown as is."""
    try:
        return row_title(row)
    except ValueError:
        return str(row)


def style(row: str) -> tuple[str, str]:
    """(colour, marker) of a row, the same in every figure; grey dots for an unknown label."""
    try:
        return row_style(row)
    except ValueError:
        return UNKNOWN_STYLE
