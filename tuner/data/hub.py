"""Built-in datasets from the Hugging Face hub, for when the data dir does not have them.

- :func:`load_hub_builtin`: an STS or SentEval built-in (``registry.HUB_SOURCES``), its columns
  renamed to ours (labels mapped or flipped where the hub's differ) and validated.
- :func:`load_hub_nli`: an NLI built-in (``registry.NLI_HUB_SOURCES``); pairs without a gold
  label are dropped.
- No network or no ``datasets`` package: a one-line :class:`TunerError` saying to pass
  ``--data-dir`` / ``TUNER_DATA_DIR`` (:func:`looks_offline` tells an unreachable hub apart).

``datasets`` is imported only when one of these runs. :func:`tuner.data.readers.load_builtin`
calls them.
"""
from __future__ import annotations

import os

import pandas as pd

from tuner.errors import TunerError

from . import registry
from .registry import HUB_SOURCES, SCORE_RANGES, Dataset, task_of
from .validate import validate_table


def hub_unreachable(name: str, extra: str = "") -> TunerError:
    return TunerError(
        f"dataset '{name}' not found locally and the Hugging Face hub is unreachable{extra}; "
        f"pass --data-dir DIR (layout of shared/data) or set TUNER_DATA_DIR"
    )


def looks_offline(exc: BaseException) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on") or \
            os.environ.get("HF_DATASETS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = f"{type(exc).__name__} {exc}".lower()
        if isinstance(exc, (ConnectionError, TimeoutError)) or any(
            k in text for k in ("offline", "connection", "couldn't reach", "could not reach", "timed out",
                                "timeout", "name resolution", "network", "max retries")
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def normalise_hub_frame(name: str, df: pd.DataFrame, src: registry.HubSource) -> pd.DataFrame:
    if task_of(name) == "sts":
        return df[[c for c in ("sentence1", "sentence2", "score") if c in df.columns] or list(df.columns)]
    out = pd.DataFrame()
    text_col = src.text_column if src.text_column in df.columns else ("text" if "text" in df.columns else "sentence")
    if text_col not in df.columns or "label" not in df.columns:
        return df  # validation names what is missing
    out["sentence"] = df[text_col]
    if src.label_from_text and "label_text" in df.columns:
        mapped = df["label_text"].astype(str).str.strip().str.lower().map(src.label_from_text)
        out["label"] = mapped.where(mapped.notna(), df["label"])
    elif src.flip_labels:
        out["label"] = 1 - pd.to_numeric(df["label"], errors="coerce")
    else:
        out["label"] = df["label"]
    return out


def load_hub_builtin(name: str, label: str | None) -> Dataset:
    src = HUB_SOURCES[name]
    try:
        import datasets as hf_datasets  # lazy: slow import, optional at runtime
    except ImportError:
        raise TunerError(
            f"dataset '{name}' not found locally and the 'datasets' package is not installed; "
            f"pass --data-dir DIR (layout of shared/data), set TUNER_DATA_DIR, or pip install datasets"
        ) from None
    try:
        dsd = hf_datasets.load_dataset(src.repo_id)
    except Exception as exc:  # network errors come in many types (requests, httpx, OSError, ...)
        if looks_offline(exc):
            raise hub_unreachable(name) from None
        msg = " ".join(str(exc).split())[:200]
        raise TunerError(
            f"dataset '{name}' not found locally and loading '{src.repo_id}' from the Hugging Face hub failed "
            f"({type(exc).__name__}: {msg}); pass --data-dir DIR (layout of shared/data) or set TUNER_DATA_DIR"
        ) from None
    task = task_of(name)
    rng = SCORE_RANGES.get(name)
    parts: dict[str, list[pd.DataFrame]] = {}
    for hub_split, ours in src.splits.items():
        if hub_split not in dsd:
            continue
        frame = normalise_hub_frame(name, dsd[hub_split].to_pandas(), src)
        parts.setdefault(ours, []).append(frame)
    if not parts:
        raise TunerError(
            f"'{src.repo_id}' on the Hugging Face hub has none of the splits {', '.join(src.splits)} "
            f"(has: {', '.join(dsd)}); pass --data-dir DIR (layout of shared/data) instead"
        )
    splits = {}
    for ours in ("train", "dev", "test", "all"):
        if ours in parts:
            df = pd.concat(parts[ours], ignore_index=True)
            splits[ours] = validate_table(df, task, f"{src.repo_id} ({ours})", score_range=rng, allow_blank=True)
    return Dataset(name=label or name, task=task, splits=splits, source=src.repo_id, score_range=rng, builtin=True)


def load_hub_nli(name: str, label: str | None) -> Dataset:
    """An NLI built-in from the hub (``registry.NLI_HUB_SOURCES``); pairs without a gold label are dropped."""
    src = registry.NLI_HUB_SOURCES[name]
    shown = f"{src.repo_id}" + (f" ({src.config})" if src.config else "")
    offline_hint = ("use the built-in 'snli' (SNLI dev+test in shared/data/nli/snli) or a file with columns "
                    "premise, hypothesis, label")
    try:
        import datasets as hf_datasets  # lazy: slow import
    except ImportError:
        raise TunerError(f"NLI dataset '{name}' comes from the Hugging Face hub ({shown}) and the 'datasets' "
                         f"package is not installed; pip install datasets, or {offline_hint}") from None
    try:
        dsd = hf_datasets.load_dataset(src.repo_id, src.config) if src.config else hf_datasets.load_dataset(src.repo_id)
    except Exception as exc:  # network errors come in many types
        reason = "the hub is unreachable" if looks_offline(exc) else \
            f"loading it failed ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
        raise TunerError(f"NLI dataset '{name}' is only on the Hugging Face hub ({shown}) and {reason}; "
                         f"{offline_hint}") from None
    splits: dict[str, pd.DataFrame] = {}
    for hub_split, ours in src.splits.items():
        if hub_split not in dsd:
            continue
        frame = dsd[hub_split].to_pandas()
        if "label" in frame.columns:  # SNLI on the hub: -1 = annotators did not agree (no gold label)
            frame = frame[pd.to_numeric(frame["label"], errors="coerce").fillna(0) >= 0]
        splits[ours] = validate_table(frame.reset_index(drop=True), "nli", f"{shown} ({ours})")
    if not splits:
        raise TunerError(f"'{shown}' on the Hugging Face hub has none of the splits {', '.join(src.splits)} "
                         f"(has: {', '.join(dsd)}); {offline_hint}")
    return Dataset(name=label or name, task="nli", splits=splits, source=shown, score_range=None, builtin=True)
