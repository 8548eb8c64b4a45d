"""Per-item outputs as compact JSON user attrs (the input of the export's paired bootstrap).

One record per (split, dataset) of a trial (``items.<split>.<dataset>``), of the zero-shot model
(study attr ``zero_shot_items.<model>.<dataset>.<split>``) and of the gold STS scores (study attr
``gold.<dataset>.<split>``)::

    {"kind": "similarity" | "correct" | "gold", "n": 1379, "idx": null | [3, 17, ...],
     "sample_seed": null | 0, "values": [0.81234, ...], "seeds": [42, 43]}

* ``values``: STS -> cosine similarity of each pair, classification -> 1/0 correctness of the
  logistic regression, rounded to 5 decimals; a trial trained with several seeds (``repeats`` in a
  TPE study) stores the mean over its seeds per item and lists them in ``seeds``.
* Items are in the order of the split's rows, which every run of a study shares (the engine's
  samples use a fixed seed). A split of more than :data:`MAX_ITEMS` rows keeps a sample of
  :data:`MAX_ITEMS` of them: ``idx`` (sorted row indices) drawn with ``sample_seed``. The sample
  depends on ``n`` only, so every record of one split holds the same items.
* Every record stays under :data:`MAX_ATTR_BYTES` (MySQL's TEXT column holds 64 KB).
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

import numpy as np

MAX_ITEMS = 3000          # 3000 x "-0.12345, " + 3000 x "1234, " ~ 48 KB
MAX_ATTR_BYTES = 60_000
SAMPLE_SEED = 0
DECIMALS = 5


def sample_index(n: int) -> Optional[list[int]]:
    """The kept rows of a split of ``n`` items: None (all of them) or a seeded sorted sample."""
    if n <= MAX_ITEMS:
        return None
    rng = np.random.default_rng(SAMPLE_SEED)
    return sorted(int(i) for i in rng.choice(n, MAX_ITEMS, replace=False))


def encode_items(values: Any, kind: str, seeds: Optional[Sequence[int]] = None) -> dict[str, Any]:
    """The JSON record of one split's per-item outputs (module docstring); ValueError when over the limit."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    idx = sample_index(len(arr))
    kept = arr if idx is None else arr[idx]
    rounded = np.round(kept, DECIMALS)
    as_int = bool(np.all(rounded == np.round(rounded)))
    record: dict[str, Any] = {"kind": kind, "n": int(len(arr)), "idx": idx,
                              "sample_seed": None if idx is None else SAMPLE_SEED,
                              "values": [int(v) for v in rounded] if as_int else [float(v) for v in rounded]}
    if seeds is not None and len(seeds) > 1:
        record["seeds"] = [int(s) for s in seeds]
    size = len(json.dumps(record))
    if size > MAX_ATTR_BYTES:
        raise ValueError(f"per-item record of {len(arr)} items is {size} bytes, over {MAX_ATTR_BYTES}")
    return record


def decode_items(record: Any) -> Optional[tuple[int, Optional[tuple[int, ...]], np.ndarray]]:
    """``(n, idx, values)`` of a record; None when it is missing or malformed (an older study)."""
    if not isinstance(record, Mapping) or "values" not in record or "n" not in record:
        return None
    try:
        values = np.asarray(record["values"], dtype=np.float64)
        idx = record.get("idx")
        idx = None if idx is None else tuple(int(i) for i in idx)
        n = int(record["n"])
    except (TypeError, ValueError):
        return None
    if len(values) != (n if idx is None else len(idx)):
        return None
    return n, idx, values


def items_key(split: str, dataset: str) -> str:
    return f"items.{split}.{dataset}"


def gold_key(dataset: str, split: str) -> str:
    return f"gold.{dataset}.{split}"


def zero_shot_items_key(model: str, dataset: str, split: str) -> str:
    return f"zero_shot_items.{model}.{dataset}.{split}"


def overlap_key(dataset: str) -> str:
    return f"overlap.{dataset}"


def eval_rows_key(dataset: str) -> str:
    """Study attr: the scored dev/test rows of ``dataset`` against its full files (tuner.data.sampling)."""
    return f"eval_rows.{dataset}"


def item_values(result: Mapping[str, Any]) -> Optional[tuple[str, np.ndarray]]:
    """(kind, per-item values) of one evaluator result (:func:`tuner.engine._run.score_eval_sets` details)."""
    if "similarities" in result:
        return "similarity", np.asarray(result["similarities"], dtype=np.float64)
    if "correct" in result:
        return "correct", np.asarray(result["correct"], dtype=np.float64)
    return None
