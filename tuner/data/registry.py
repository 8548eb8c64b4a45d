"""Built-in dataset names, aliases, on-disk layout and Hugging Face hub ids.

The built-in evaluation sets live in a *data dir* with the layout of ``shared/data``::

    <data dir>/MANIFEST.sha256
    <data dir>/sts/<name>/{train,dev,test}.tsv      (only the splits the source has)
    <data dir>/senteval/<name>/all.tsv
    <data dir>/nli/<name>/{train,dev,test}.tsv       (NLI: premise, hypothesis, label)

A data dir is found, in this order:

1. the ``data_dir`` argument (``--data-dir``); giving it disables auto-detection;
2. the environment variable ``TUNER_DATA_DIR``; also disables auto-detection;
3. auto-detection (skipped when ``TUNER_NO_AUTODETECT=1``): the first of
   ``<cwd>/../shared/data``, ``<cwd>/shared/data`` and ``<repo root>/../shared/data``
   that holds ``MANIFEST.sha256`` or an ``sts/`` folder.

When a built-in is not on disk it is loaded from the Hugging Face hub (see ``HUB_SOURCES``).
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tuner.errors import TunerError

STS_DATASETS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
CLASSIFICATION_DATASETS = ("mr", "cr", "mpqa", "subj")
BUILTIN_DATASETS = STS_DATASETS + CLASSIFICATION_DATASETS
#: NLI training data (premise, hypothesis, label); a task of its own, kept out of BUILTIN_DATASETS
#: (the evaluation sets) so that code iterating the evaluation sets is unchanged.
NLI_DATASETS = ("snli", "allnli")
TASKS = ("sts", "classification")
SPLIT_NAMES = ("train", "dev", "test")

#: Gold score scale of each built-in STS set (SICK-R keeps its original 1..5 scale).
SCORE_RANGES: dict[str, tuple[float, float]] = {name: (0.0, 5.0) for name in STS_DATASETS}
SCORE_RANGES["sickr"] = (1.0, 5.0)
#: Scale assumed for custom STS data unless ``score_range`` is given.
DEFAULT_SCORE_RANGE = (0.0, 5.0)

#: Splits shipped on disk for each built-in (``shared/data`` layout).
LOCAL_SPLITS: dict[str, tuple[str, ...]] = {
    "sts12": ("test",),
    "sts13": ("test",),
    "sts14": ("test",),
    "sts15": ("test",),
    "sts16": ("test",),
    "stsb": ("train", "dev", "test"),
    "sickr": ("train", "dev", "test"),
    "mr": ("all",),
    "cr": ("all",),
    "mpqa": ("all",),
    "subj": ("all",),
    # shared/data ships SNLI's official dev and test splits (train, 550k pairs, is hub-only);
    # AllNLI (SNLI + MultiNLI) is hub-only.
    "snli": ("dev", "test"),
    "allnli": (),
}

#: Environment variables.
ENV_DATA_DIR = "TUNER_DATA_DIR"
ENV_NO_AUTODETECT = "TUNER_NO_AUTODETECT"

# Repository root: tuner/data/registry.py -> parents[2].
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class HubSource:
    """Where a built-in lives on the Hugging Face hub and how to normalise it.

    ``splits`` maps hub split names to ours; for classification sets every listed split is
    concatenated (in the listed order) into the single ``all`` table, because SentEval
    evaluates MR/CR/MPQA/SUBJ by cross-validation over all rows.
    ``text_column`` is renamed to ``sentence`` (classification only).
    ``label_from_text`` maps a ``label_text`` value to our 0/1 label when that column exists;
    ``flip_labels`` is used otherwise (both only to follow SentEval's label convention).
    """

    repo_id: str
    splits: dict[str, str]
    text_column: str | None = None
    label_from_text: dict[str, int] = field(default_factory=dict)
    flip_labels: bool = False
    note: str = ""
    config: str | None = None  # the hub dataset's configuration (subset) name, if it has several


#: Hub copies of the built-ins, used only when the set is not found in a data dir.
#:
#: STS: MTEB's copies (columns sentence1, sentence2, score). For sts12..sts16 only the
#: ``test`` split is used, matching SentEval/MTEB evaluation and the on-disk layout
#: (MTEB also ships a train split for STS12; it is ignored). ``mteb/sickr-sts`` has a
#: single test split of ~9.9k pairs (train+trial+test of SemEval-2014 concatenated).
#:
#: SentEval classification (no official SentEval hub copy exists):
#:   mr   -> cornell-movie-review-data/rotten_tomatoes: the canonical hub copy of Pang & Lee's
#:           sentence polarity v1.0 (5331 pos + 5331 neg = 10662 rows over
#:           train/validation/test, label 1 = pos), i.e. exactly the rows of SentEval's MR.
#:   cr   -> SetFit/SentEval-CR: built from SentEval's custrev.pos/custrev.neg files (which the
#:           repo also ships); train+test jsonl with text/label.
#:   mpqa -> jxm/mpqa: sentence/label; train (8603) + test (2000) = 10603 = SentEval's 10606
#:           rows minus its 3 empty sentences. Its 256-row ``dev`` split is a sample for
#:           few-shot work and is not used (it would duplicate rows).
#:   subj -> SetFit/subj: "the SUBJ dataset as used in SentEval"; train+test with
#:           text/label/label_text. SetFit labels subjective=1; SentEval labels
#:           objective=1, so labels are mapped from label_text (or flipped).
HUB_SOURCES: dict[str, HubSource] = {
    "sts12": HubSource("mteb/sts12-sts", {"test": "test"}),
    "sts13": HubSource("mteb/sts13-sts", {"test": "test"}),
    "sts14": HubSource("mteb/sts14-sts", {"test": "test"}),
    "sts15": HubSource("mteb/sts15-sts", {"test": "test"}),
    "sts16": HubSource("mteb/sts16-sts", {"test": "test"}),
    "stsb": HubSource("mteb/stsbenchmark-sts", {"train": "train", "validation": "dev", "test": "test"}),
    "sickr": HubSource("mteb/sickr-sts", {"test": "test"}),
    "mr": HubSource(
        "cornell-movie-review-data/rotten_tomatoes",
        {"train": "all", "validation": "all", "test": "all"},
        text_column="text",
    ),
    "cr": HubSource("SetFit/SentEval-CR", {"train": "all", "test": "all"}, text_column="text"),
    "mpqa": HubSource("jxm/mpqa", {"train": "all", "test": "all"}, text_column="sentence"),
    "subj": HubSource(
        "SetFit/subj",
        {"train": "all", "test": "all"},
        text_column="text",
        label_from_text={"objective": 1, "subjective": 0},
        flip_labels=True,
    ),
}
HUB_IDS: dict[str, str] = {name: src.repo_id for name, src in HUB_SOURCES.items()}

#: Hub copies of the NLI sets (labels 0 entailment, 1 neutral, 2 contradiction; SNLI's -1 =
#: no gold label is dropped on load). ``snli`` is read from ``<data dir>/nli/snli/`` when present
#: (official dev and test only); ``allnli`` is SNLI + MultiNLI as sentence-transformers trains on
#: it (its ``pair-class`` subset: premise, hypothesis, label).
NLI_HUB_SOURCES: dict[str, HubSource] = {
    "snli": HubSource("stanfordnlp/snli", {"train": "train", "validation": "dev", "test": "test"}),
    "allnli": HubSource("sentence-transformers/all-nli", {"train": "train", "dev": "dev", "test": "test"},
                        config="pair-class"),
}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-./:]+", "", name.strip().lower())


_ALIASES: dict[str, str] = {}


def _add(canonical: str, *aliases: str) -> None:
    for alias in (canonical, *aliases):
        _ALIASES[_norm(alias)] = canonical


for _year in ("12", "13", "14", "15", "16"):
    _add(f"sts{_year}", f"sts20{_year}", f"sts{_year}-sts", f"semeval20{_year}", f"sts{_year}-en-test")
_add("stsb", "sts-b", "stsbenchmark", "sts-benchmark", "stsbench", "stsbenchmark-sts", "sts-benchmark-sts")
_add("sickr", "sick-r", "sick", "sick-relatedness", "sickrelatedness", "sickr-sts", "sick2014")
_add("mr", "movie-review", "movie-reviews", "moviereview", "rt-polarity", "rotten-tomatoes", "senteval-mr")
_add("cr", "customer-review", "customer-reviews", "custrev", "senteval-cr")
_add("mpqa", "mpqa-polarity", "senteval-mpqa")
_add("subj", "subjectivity", "senteval-subj")
for _name, _src in HUB_SOURCES.items():
    _add(_name, _src.repo_id)
_add("snli", "snli-1.0", "snli1.0", "stanford-nli", "stanfordnlp/snli")
_add("allnli", "all-nli", "sentence-transformers/all-nli", "snli+mnli", "snli+multinli")


def canonical_name(name: str) -> str | None:
    """Canonical built-in name for ``name`` (case, ``-``/``_``/space insensitive), else None.

    >>> canonical_name("STS-B"), canonical_name("SICK-R"), canonical_name("STS12"), canonical_name("x")
    ('stsb', 'sickr', 'sts12', None)
    """
    if not isinstance(name, str) or not name.strip():
        return None
    return _ALIASES.get(_norm(name))


def task_of(name: str) -> str:
    """``"sts"`` or ``"classification"`` for a canonical built-in name."""
    if name in STS_DATASETS:
        return "sts"
    if name in CLASSIFICATION_DATASETS:
        return "classification"
    if name in NLI_DATASETS:
        return "nli"
    raise KeyError(name)


def suggest(name: str) -> str | None:
    """Closest built-in name/alias for a misspelt ``name`` (for "did you mean" hints)."""
    match = difflib.get_close_matches(_norm(name), list(_ALIASES), n=1, cutoff=0.75)
    return _ALIASES[match[0]] if match else None


@dataclass
class Dataset:
    """One dataset, as loaded by :func:`tuner.data.load_dataset`.

    ``splits`` holds the splits the *source* has: stsb/sickr ``train``/``dev``/``test``;
    sts12..16 ``test``; MR/CR/MPQA/SUBJ ``all``; a custom file its one table under ``all``
    (or ``train``/``dev``/``test`` when it has a ``split`` column).
    STS frames have columns sentence1, sentence2 (str) and score (float64); classification
    frames sentence (str) and label (int64, 0/1); every index is a fresh RangeIndex.
    A retrieval set (:mod:`tuner.data.beir`) keeps its relevance judgements as splits
    (query_id, corpus_id, score) and the ``corpus`` and ``queries`` (id, text) they point into.
    """

    name: str
    task: str
    splits: dict[str, pd.DataFrame]
    source: str
    score_range: tuple[float, float] | None
    builtin: bool = False
    corpus: pd.DataFrame | None = None
    queries: pd.DataFrame | None = None

    def official(self) -> pd.DataFrame:
        """The split ``evaluate`` scores by default: ``test`` if present, else ``all``."""
        if "test" in self.splits:
            return self.splits["test"]
        if "all" in self.splits:
            return self.splits["all"]
        raise TunerError(
            f"dataset '{self.name}' has neither a 'test' nor an 'all' split "
            f"(has: {', '.join(self.splits) or 'none'}); add test rows"
        )

    def __repr__(self) -> str:  # keep reprs short: no DataFrame dumps
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"Dataset(name={self.name!r}, task={self.task!r}, splits={{{sizes}}}, source={self.source!r})"


# --------------------------------------------------------------------------------------
# data dir discovery and layout


def is_data_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder with the ``shared/data`` layout."""
    p = Path(path)
    return p.is_dir() and (
        (p / "MANIFEST.sha256").is_file() or (p / "sts").is_dir() or (p / "senteval").is_dir()
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def autodetect_candidates() -> list[Path]:
    """Folders auto-detection looks at, in order."""
    cwd = Path.cwd()
    out: list[Path] = []
    for cand in (cwd.parent / "shared" / "data", cwd / "shared" / "data", _REPO_ROOT.parent / "shared" / "data"):
        cand = cand.resolve()
        if cand not in out:
            out.append(cand)
    return out


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The data dir to read built-ins from, or None when there is none.

    An explicit ``data_dir`` (or ``TUNER_DATA_DIR``) must exist; it is then used as is,
    even when it holds no built-in (callers fall back to the hub).
    """
    explicit, origin = (data_dir, "--data-dir") if data_dir is not None else (os.environ.get(ENV_DATA_DIR), ENV_DATA_DIR)
    if explicit is not None and str(explicit).strip():
        p = Path(explicit).expanduser()
        if not p.exists():
            raise TunerError(
                f"data directory '{explicit}' ({origin}) does not exist; point it at a folder with the "
                f"layout of shared/data (sts/<name>/test.tsv, senteval/<name>/all.tsv)"
            )
        if not p.is_dir():
            raise TunerError(
                f"data directory '{explicit}' ({origin}) is a file, not a folder; point it at a folder "
                f"with the layout of shared/data, or pass the file itself as the dataset"
            )
        return p
    if _truthy(os.environ.get(ENV_NO_AUTODETECT)):
        return None
    for cand in autodetect_candidates():
        if (cand / "MANIFEST.sha256").is_file() or (cand / "sts").is_dir():
            return cand
    return None


def builtin_files(name: str, data_dir: Path | None) -> dict[str, Path]:
    """Split -> file for a canonical built-in in ``data_dir`` (only files that exist)."""
    if data_dir is None:
        return {}
    folder = builtin_folder(name, data_dir)
    return {split: folder / f"{split}.tsv" for split in LOCAL_SPLITS[name] if (folder / f"{split}.tsv").is_file()}


def builtin_folder(name: str, data_dir: "str | os.PathLike") -> Path:
    """``<data dir>/sts|senteval|nli/<name>`` for a canonical built-in."""
    group = "sts" if name in STS_DATASETS else "nli" if name in NLI_DATASETS else "senteval"
    return Path(data_dir) / group / name
