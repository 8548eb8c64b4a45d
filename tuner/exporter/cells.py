"""One matrix cell's candidates grouped into configurations, each with its seeds.

Trials that differ only in the grid param ``seed`` are one configuration run with several seeds
(``repeats`` in a grid study); a TPE/random trial run with several seeds carries them in
``scores_by_seed``. A cell's value is the **mean over the seeds** of the configuration chosen by
(mean) dev score: choosing among configurations by dev stays, but the seeds of one configuration
are averaged, never picked.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from tuner.exporter.items import decode_items, items_key
from tuner.exporter.trials import finite, trial_score


@dataclass
class Config:
    """The trials of one configuration in one cell, and one score per seed."""

    trials: list[Any] = field(default_factory=list)
    seeds: list[Optional[int]] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=lambda: {"dev": [], "test": []})

    @property
    def numbers(self) -> list[int]:
        return [t.number for t in self.trials]

    def mean(self, split: str) -> Optional[float]:
        values = [v for v in self.scores[split] if v is not None]
        return float(np.mean(values)) if values else None


def config_key(trial: Any) -> str:
    """Trials with the same key are seeds of one configuration: grid params without ``seed``."""
    if "seed" not in trial.params:
        return f"trial:{trial.number}"
    return json.dumps({k: v for k, v in trial.params.items() if k != "seed"}, sort_keys=True, default=str)


def seed_scores(trial: Any, dataset: str, dev_fallback: Optional[float]) -> list[tuple[Optional[int], dict]]:
    """``[(seed, {"dev": score, "test": score})]``: one entry per seed the trial ran."""
    by_seed = trial.user_attrs.get("scores_by_seed")
    if isinstance(by_seed, Mapping) and len(by_seed) > 1:
        out = []
        for seed, per_split in sorted(by_seed.items(), key=lambda kv: str(kv[0])):
            if not isinstance(per_split, Mapping):
                continue
            scores = {s: finite((per_split.get(s) or {}).get(dataset)) for s in ("dev", "test")}
            try:
                seed_int: Optional[int] = int(seed)
            except (TypeError, ValueError):
                seed_int = None
            out.append((seed_int, scores))
        if out:
            return out
    seed = trial.params.get("seed")
    dev = trial_score(trial, "dev", dataset)
    return [(None if seed is None else int(seed),
             {"dev": dev if dev is not None else dev_fallback, "test": trial_score(trial, "test", dataset)})]


def group_configs(trials: Sequence[Any], dataset: str, dev_fallback: Mapping[int, Optional[float]]) -> list[Config]:
    """The cell's candidates grouped by :func:`config_key`, in first-trial order."""
    groups: dict[str, Config] = {}
    for trial in trials:
        group = groups.setdefault(config_key(trial), Config())
        group.trials.append(trial)
        for seed, scores in seed_scores(trial, dataset, dev_fallback.get(trial.number)):
            group.seeds.append(seed)
            for split in ("dev", "test"):
                group.scores[split].append(scores[split])
    return list(groups.values())


def config_items(config: Config, split: str, dataset: str) -> Optional[tuple[int, Optional[tuple], np.ndarray]]:
    """The configuration's per-item outputs on ``split``: each trial's record (itself a mean over its
    seeds), averaged with one weight per seed; None when a trial has no record or they disagree on items."""
    parts, weights, shape = [], [], None
    for trial in config.trials:
        decoded = decode_items(trial.user_attrs.get(items_key(split, dataset)))
        if decoded is None:
            return None
        n, idx, values = decoded
        if shape is not None and shape != (n, idx):
            return None
        shape = (n, idx)
        by_seed = trial.user_attrs.get("scores_by_seed")
        parts.append(values)
        weights.append(len(by_seed) if isinstance(by_seed, Mapping) and len(by_seed) > 1 else 1)
    if shape is None:
        return None
    return shape[0], shape[1], np.average(np.vstack(parts), axis=0, weights=weights)
