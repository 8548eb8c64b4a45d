"""Hard-negative mining settings: what a mined triplet file means (issue #24).

Mining turns (anchor, positive) pairs into triplets: for every anchor, the texts of a corpus (every
positive of the file, plus an optional corpus file) that the *base* model finds most similar, except
the anchor's own positive(s) and any text equal to one of them or to the anchor. The options are
sentence-transformers' ``mine_hard_negatives`` options, with the same meaning:

* ``range_min``, ``range_max``: the candidates are the ranks ``[range_min, range_max)`` of that
  ranking (rank 0 = the most similar text that is not a positive). Here ranks come from the
  similarity alone, before the score filters below, so a window means the same whatever the margin;
  sentence-transformers skips its ``range_min`` after filtering.
* ``margin`` (sentence-transformers' ``absolute_margin``): keep a candidate only when its similarity is
  at most the positive's minus ``margin`` (0: never closer than the positive). With several
  positives the least similar one counts.
* ``relative_margin``: keep it only when its similarity is at most
  ``positive - |positive| * relative_margin`` (0.05: NV-Retriever's TopK-PercPos 95%).
* ``max_score`` / ``min_score``: keep it only when its similarity is at most / at least that.
* ``num_negatives``: how many to keep per anchor (fewer when fewer candidates pass);
  ``sampling``: ``top`` takes the most similar of the candidates that pass, ``random`` draws them
  (seeded by ``seed``) and keeps them in similarity order.

``range_max`` unset is sentence-transformers' default: ``range_min + num_negatives``, or
``range_min + 10 * num_negatives`` when a margin or a score bound may drop candidates.

This module is torch-free: :class:`~tuner.config.RunConfig`'s ``mine_*`` fields and the ``mine``
command check their values here before any model loads; :mod:`tuner.engine._mining` mines.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from tuner.data.readers import read_table
from tuner.errors import ConfigError, TunerError, check_integer

SAMPLING = ("top", "random")
MINING_SEED = 42  # fixed, like the split seed: every trial and seed of a study mines the same triplets
#: The settings a study may search (``[search] mine_num_negatives = [1, 3]``), all numbers.
SEARCHABLE = ("num_negatives", "range_min", "range_max", "margin", "relative_margin", "max_score", "min_score")
INTEGER = ("num_negatives", "range_min", "range_max")


@dataclass(frozen=True)
class MiningSettings:
    """One way to mine: the module doc gives each option's meaning. ``resolved()`` fills in ``range_max``."""

    num_negatives: int = 1
    range_min: int = 0
    range_max: Optional[int] = None
    margin: Optional[float] = None
    relative_margin: Optional[float] = None
    max_score: Optional[float] = None
    min_score: Optional[float] = None
    sampling: str = "top"
    seed: int = MINING_SEED

    @property
    def filters(self) -> bool:
        """True when a margin or a score bound may drop candidates."""
        return any(v is not None for v in (self.margin, self.relative_margin, self.max_score, self.min_score))

    def resolved(self) -> "MiningSettings":
        """These settings with ``range_max`` filled in (sentence-transformers' default) and checked."""
        checked = check_mining(self)
        if checked.range_max is not None:
            return checked
        span = checked.num_negatives * (10 if checked.filters else 1)
        return check_mining(MiningSettings(**{**asdict(checked), "range_max": checked.range_min + span}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_value(name: str, value: Any, key: Optional[str] = None) -> Any:
    """One mining option's value, checked alone (:class:`ConfigError` naming ``key``, default ``name``)."""
    key = key or name
    if name == "sampling":
        if value not in SAMPLING:
            raise ConfigError(key, f"'{value}' is unknown; use {' or '.join(SAMPLING)}")
        return value
    if value is None and name not in ("num_negatives", "range_min", "seed"):
        return None
    if name in INTEGER or name == "seed":
        value = check_integer(value, key)
        low = {"num_negatives": 1, "range_max": 1}.get(name, 0)
        if value < low:
            raise ConfigError(key, f"is {value}; use {low} or more")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigError(key, f"must be a finite number, got {value!r}")
    return float(value)


def check_mining(settings: MiningSettings, prefix: str = "") -> MiningSettings:
    """Every option checked, alone and together (``prefix`` goes before each key: ``mine_`` in a run config)."""
    values = {name: check_value(name, value, prefix + name) for name, value in asdict(settings).items()}
    s = MiningSettings(**values)
    if s.range_max is not None:
        if s.range_min >= s.range_max:
            raise ConfigError(prefix + "range_min", f"is {s.range_min}, not below range_max {s.range_max}; the "
                                                    "candidates are the ranks [range_min, range_max)")
        if s.num_negatives > s.range_max - s.range_min:
            raise ConfigError(prefix + "num_negatives", f"is {s.num_negatives}, but the ranks [{s.range_min}, "
                                                        f"{s.range_max}) hold only {s.range_max - s.range_min} "
                                                        "candidates; lower it or widen the range")
    if s.max_score is not None and s.min_score is not None and s.min_score > s.max_score:
        raise ConfigError(prefix + "min_score", f"is {s.min_score:g}, above max_score {s.max_score:g}; no "
                                                "candidate could pass")
    return s


def read_corpus(path: "str | os.PathLike[str]") -> list[str]:
    """Extra candidate texts: a ``.txt`` file (one text a line) or a table with a ``text`` column (or one column)."""
    p = Path(path)
    if p.suffix.lower() == ".txt":
        try:
            texts = [line.strip() for line in p.read_text(encoding="utf-8-sig").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise TunerError(f"{path}: cannot read the corpus: {getattr(exc, 'strerror', None) or exc}") from None
    else:
        table = read_table(p)
        if "text" not in table.columns and len(table.columns) != 1:
            raise TunerError(f"{path}: the corpus needs a 'text' column (found: {', '.join(map(str, table.columns))}); "
                             "or give a .txt file with one text a line")
        texts = [str(v).strip() for v in table["text" if "text" in table.columns else table.columns[0]]]
    texts = [t for t in texts if t]
    if not texts:
        raise TunerError(f"{path}: the corpus holds no text; give one text a line (.txt) or a 'text' column")
    return texts
