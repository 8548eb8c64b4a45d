"""The loss registry: the one place that knows which losses exist.

Everything that names a loss derives from :data:`LOSSES`: the combined loss, the ``--weights`` /
``--taus`` parsers, the study keys (``use_<loss>``, ``w_<loss>``, ``tau_<loss>``), the rows of the
results matrix and their titles, plot colours and markers, and the API. Adding a loss is one file
in ``tuner/losses/`` plus one :func:`register_loss` call (or one line in :data:`LOSSES` for a
built-in one).

**Losses outside the package** register themselves from a plugin module: name it in
``$TUNER_PLUGINS`` (comma-separated module names) or in the ``tuner.plugins`` entry-point group of
an installed package; it is imported the first time the registry is, in every process (the CLI,
each worker, the exporter), and calls :func:`register_loss`.

This module imports no torch: a loss function is named by a ``"module:function"`` path and only
imported when a model trains, so the exporter and the study parser stay light.

**Rows.** A fine-tuning run is labelled by the set of losses that are on (weight > 0), written in
registry order and joined with ``+`` (``"cos_mse+cosent"``); all weights 0 means cosine-MSE alone,
as in the seed. The results matrix lists ``zero_shot`` first, then the seed's eight rows in the
seed's order (:data:`SEED_ROWS`), then any other combination that has data, by size and registry
order (:func:`row_sort_key`): with the four built-in losses, up to 15 non-empty combinations.
"""
from __future__ import annotations

import importlib
import itertools
import math
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable, Mapping, Optional

from tuner.errors import TunerError

ZERO_SHOT = "zero_shot"
ZERO_SHOT_TITLE = "Without Fine-Tuning"
#: What trains when every weight is 0 (the seed's default run: plain cosine similarity).
FALLBACK_LOSS = "cos_mse"


@dataclass(frozen=True)
class LossSpec:
    """One loss: how it is named, shown and computed.

    Args:
        name: canonical key (``cosent``); used in study keys, row labels and JSON.
        title: title of its single-loss row (``"CoSENT"``).
        short: its part in a combination's title (``"CoSENT+IBN"``).
        function: ``"module:function"``; called as ``fn(a, b, labels, **kwargs)`` with ``a``/``b``
            ``[N, d]`` and labels normalised to 0..1, plus ``tau=`` when it has a temperature.
        default_tau: its temperature's default, or None when it takes none. The only place a default
            temperature is written: the loss functions' ``tau=None``, ``RunConfig.taus`` and the study
            files all read it from here (:func:`default_tau`, :func:`default_taus`).
        aliases: other spellings users type (the seed's names included), matched case-insensitively.
        color, marker: plot style of its single-loss row.
        options: keyword of ``function`` -> :class:`tuner.config.RunConfig` field passed to it.
        paper: where it comes from.
        triplet: ``"module:function"`` of its NLI-triplet form, ``fn(anchor, positive, negative,
            tau=)`` (:func:`tuner.losses.in_batch_negatives.hard_negatives_loss`); a loss with one
            trains on (premise, entailed, contradiction) triplets in NLI runs, the others on
            scored pairs (:mod:`tuner.data.nli`).
        triplet_options: as ``options``, for the triplet form.
        text_ids: its functions take ``text_ids=``: one integer tensor per embedding argument (``(a, b)``;
            ``(anchor, positive, negative)``), equal ids = identical text, from the training loop.
        shapes: the training data it can learn from (:data:`SHAPES`): ``scored`` pairs (STS scores,
            labelled sentences), ``nli`` rows, ``triplets`` (their (anchor, positive) = 1 and (anchor,
            negative) = 0 pairs, or its triplet form) and unscored ``pairs`` (only a loss whose triplet
            form treats the rest of the batch as negatives: scores that are all equal teach a pair
            loss nothing, or collapse it).
    """

    name: str
    title: str
    short: str
    function: str
    default_tau: Optional[float] = None
    aliases: tuple[str, ...] = ()
    color: str = "#7f7f7f"
    marker: str = "o"
    options: Mapping[str, str] = field(default_factory=dict)
    paper: str = ""
    triplet: str = ""
    triplet_options: Mapping[str, str] = field(default_factory=dict)
    text_ids: bool = False
    shapes: tuple[str, ...] = ("scored", "nli", "triplets")

    @property
    def has_tau(self) -> bool:
        return self.default_tau is not None

    def load(self, triplet: bool = False) -> Callable[..., Any]:
        """Import the loss function, or its triplet form (torch is imported here, not before)."""
        module, _, attr = (self.triplet if triplet else self.function).partition(":")
        return getattr(importlib.import_module(module), attr)


#: Training-data shapes (:attr:`LossSpec.shapes`), with how messages name them.
SHAPES = {"scored": "scored pairs", "nli": "NLI rows", "pairs": "unscored (anchor, positive) pairs",
          "triplets": "(anchor, positive, negative) triplets"}


def losses_for_shape(shape: str) -> list[str]:
    """The registered losses that can train on ``shape``, in registry order."""
    return [name for name, spec in LOSSES.items() if shape in spec.shapes]


def check_shape(losses: Iterable[str], shape: str, where: str) -> None:
    """One line naming the losses that can, when one of ``losses`` cannot train on ``shape`` data."""
    wrong = [name for name in losses if shape not in LOSSES[name].shapes]
    if wrong:
        able = losses_for_shape(shape)
        raise TunerError(f"{where} holds {SHAPES[shape]}, which {'+'.join(wrong)} cannot train on; losses that can: "
                         f"{', '.join(able) or 'none'} (e.g. --weights {able[0]}=1)" if able else
                         f"{where} holds {SHAPES[shape]}, which no registered loss trains on")


#: The built-in losses, in registry order (the order of row names and tables).
LOSSES: dict[str, LossSpec] = {}


def register_loss(spec: LossSpec) -> LossSpec:
    """Add a loss. Its name and aliases must not clash with a registered one."""
    taken = _alias_map()
    for alias in (spec.name, *spec.aliases):
        key = _norm(alias)
        if key in taken and taken[key] != spec.name:
            raise ValueError(f"loss alias {alias!r} is already used by {taken[key]!r}")
    if not spec.name.isidentifier() or spec.name == ZERO_SHOT:
        raise ValueError(f"loss name {spec.name!r} must be an identifier other than {ZERO_SHOT!r}")
    LOSSES[spec.name] = spec
    _alias_map.cache = None  # type: ignore[attr-defined]
    return spec


def unregister_loss(name: str) -> None:
    """Remove a loss (tests that register a toy loss clean up with this)."""
    LOSSES.pop(name, None)
    _alias_map.cache = None  # type: ignore[attr-defined]


def _norm(text: str) -> str:
    return str(text).strip().lower().replace("-", "_").replace(" ", "_")


def _alias_map() -> dict[str, str]:
    cache = getattr(_alias_map, "cache", None)
    if cache is None:
        cache = {}
        for spec in LOSSES.values():
            for alias in (spec.name, spec.title, spec.short, *spec.aliases):
                cache.setdefault(_norm(alias), spec.name)
        _alias_map.cache = cache  # type: ignore[attr-defined]
    return cache


register_loss(LossSpec(
    "cos_mse", "Default Cosine Similarity", "CosMSE", "tuner.losses.cosine_mse:cosine_mse_loss",
    aliases=("cosine_mse", "cos", "cosine", "cosine_similarity", "cos_sim", "default"),
    color="#1f77b4", marker="o", paper="Reimers & Gurevych 2019 (SBERT CosineSimilarityLoss)"))
# Default temperatures: CoSENT 20 (the paper's and sentence-transformers' scale), in-batch negatives 20
# (temperature 0.05, as AnglE and SimCSE), AnglE 1.0 (AnglE's own; sentence-transformers' AnglELoss uses 20).
register_loss(LossSpec(
    "cosent", "CoSENT", "CoSENT", "tuner.losses.cosent:cosent_loss", default_tau=20.0,
    color="#ff7f0e", marker="^", paper="Su 2022"))
register_loss(LossSpec(
    "ibn", "In-Batch Negatives", "IBN", "tuner.losses.in_batch_negatives:in_batch_negatives_loss",
    default_tau=20.0, aliases=("in_batch_negatives", "inbatch", "in_batch", "mnrl"),
    color="#2ca02c", marker="v",
    options={"positive_threshold": "ibn_positive_threshold", "duplicates": "ibn_duplicates"},
    paper="Gao et al. 2021 (SimCSE); Li & Li 2023 (AnglE)",
    triplet="tuner.losses.in_batch_negatives:hard_negatives_loss",
    triplet_options={"duplicates": "ibn_duplicates"}, text_ids=True, shapes=("scored", "nli", "pairs", "triplets")))
register_loss(LossSpec(
    "angle", "Angle", "Angle", "tuner.losses.angle:angle_loss", default_tau=1.0,
    aliases=("angle_loss", "angl_e"), color="#d62728", marker="D", paper="Li & Li 2023 (AnglE)"))


ENV_PLUGINS = "TUNER_PLUGINS"


def load_plugins() -> list[str]:
    """Import the plugin modules named by ``$TUNER_PLUGINS`` and the ``tuner.plugins`` entry points."""
    names = [n.strip() for n in os.environ.get(ENV_PLUGINS, "").split(",") if n.strip()]
    loaded = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # one line, not a traceback: the losses it adds are then unknown
            print(f"warning: ${ENV_PLUGINS} names module '{name}', which cannot be imported ({exc}); "
                  "fix the name or put its folder on PYTHONPATH", file=sys.stderr)
            continue
        loaded.append(name)
    for ep in entry_points(group="tuner.plugins"):
        ep.load()
        loaded.append(ep.value)
    return loaded


def loss_names() -> tuple[str, ...]:
    """Registered loss names, in registry order."""
    return tuple(LOSSES)


def default_taus() -> dict[str, float]:
    """``{loss: default tau}`` for the losses that take a temperature."""
    return {name: float(spec.default_tau) for name, spec in LOSSES.items() if spec.default_tau is not None}


def default_tau(loss: str) -> float:
    """The default temperature of ``loss`` (what its function uses when called with ``tau=None``)."""
    check_takes_tau(loss)
    return float(LOSSES[loss].default_tau)  # type: ignore[arg-type]


def check_takes_tau(loss: str) -> None:
    """ValueError ``"cos_mse takes no temperature; only cosent, ibn, angle do"`` unless ``loss`` takes one."""
    if not LOSSES[loss].has_tau:
        with_tau = [n for n, s in LOSSES.items() if s.has_tau]
        raise ValueError(f"{loss} takes no temperature; only {', '.join(with_tau)} do")


def canonical_loss(text: str) -> str:
    """``"CoSENT"``, ``"in_batch_negatives"``, ``"IBN"`` -> the registry name; ValueError otherwise."""
    name = _alias_map().get(_norm(text))
    if name is None:
        raise ValueError(f"unknown loss {text!r}; use one of {', '.join(LOSSES)}")
    return name


# --------------------------------------------------------------------------------------------
# Combinations (= result rows)


def combo_key(names: Iterable[str]) -> str:
    """Losses -> their row label in registry order: ``["ibn", "CoSENT"]`` -> ``"cosent+ibn"``."""
    chosen = {canonical_loss(n) for n in names}
    if not chosen:
        raise ValueError("a loss combination needs at least one loss")
    return "+".join(name for name in LOSSES if name in chosen)


def parse_combo(text: str) -> tuple[str, ...]:
    """``"CoSENT+IBN"`` / ``"cosent+ibn"`` / ``"cos_mse"`` -> ``("cosent", "ibn")``; ValueError."""
    parts = [p for p in str(text).replace(" ", "").split("+") if p]
    if not parts:
        raise ValueError(f"empty loss combination {text!r}")
    names = [canonical_loss(p) for p in parts]
    if len(set(names)) != len(names):
        raise ValueError(f"loss combination {text!r} names a loss twice")
    return tuple(n for n in LOSSES if n in names)


def row_of_weights(weights: Mapping[str, float]) -> str:
    """The row a weight vector belongs to: the losses with weight > 0 (cosine-MSE when none)."""
    on = [n for n, w in weights.items() if float(w) > 0]
    return combo_key(on) if on else FALLBACK_LOSS


def weights_of_row(row: str, weight: float = 1.0) -> dict[str, float]:
    """``"cosent+angle"`` -> ``{cos_mse: 0, cosent: 1, ibn: 0, angle: 1}`` (every registered loss)."""
    on = set(parse_combo(row))
    return {name: (weight if name in on else 0.0) for name in LOSSES}


def all_combinations(names: Optional[Iterable[str]] = None) -> list[str]:
    """Every non-empty combination of ``names`` (default: all losses), in row order."""
    pool = [canonical_loss(n) for n in names] if names is not None else list(LOSSES)
    combos = [combo_key(c) for k in range(1, len(pool) + 1) for c in itertools.combinations(pool, k)]
    return sorted(set(combos), key=row_sort_key)


#: The seed's results rows, in its order: zero-shot, cosine-MSE alone, then every combination of
#: CoSENT, in-batch negatives and AnglE (cosine-MSE is the seed's fallback, never combined).
SEED_LOSSES: tuple[str, ...] = ("cosent", "ibn", "angle")
SEED_ROWS: tuple[str, ...] = (ZERO_SHOT, "cos_mse", *[
    "+".join(c) for k in range(1, len(SEED_LOSSES) + 1) for c in itertools.combinations(SEED_LOSSES, k)])
SEED_FINETUNE_ROWS: tuple[str, ...] = SEED_ROWS[1:]


def row_sort_key(row: str) -> tuple:
    """Order of matrix rows: zero-shot, the seed's rows, then by size and registry order."""
    if row in SEED_ROWS:
        return (0, SEED_ROWS.index(row))
    try:
        names = parse_combo(row)
    except ValueError:
        return (2, 0, (), row)
    order = list(LOSSES)
    return (1, len(names), tuple(order.index(n) for n in names), row)


def row_title(row: str) -> str:
    """``"cosent+ibn"`` -> ``"CoSENT+IBN"``; a single loss -> its title; zero-shot -> its title."""
    if row == ZERO_SHOT:
        return ZERO_SHOT_TITLE
    names = parse_combo(row)
    if len(names) == 1:
        return LOSSES[names[0]].title
    return "+".join(LOSSES[n].short for n in names)


def canonical_row(text: str) -> str:
    """A row label or title as users and old exports spell it -> the canonical row; ValueError."""
    norm = str(text).strip()
    if _norm(norm) in (ZERO_SHOT, _norm(ZERO_SHOT_TITLE), "without_fine_tuning", "zero-shot", "zeroshot"):
        return ZERO_SHOT
    return combo_key(parse_combo(norm))


# Colours for combination rows: tab10 after the single losses' colours, then tab20's light shades.
_COMBO_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17a2b8", "#bcbd22", "#393b79", "#637939", "#8c6d31",
                 "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363")
_COMBO_MARKERS = ("P", "X", "*", "h", "p", "<", ">", "d", "H", "8", "1", "2", "3", "4", "+")


def row_style(row: str) -> tuple[str, str]:
    """(colour, marker) of a row, the same in every figure."""
    if row == ZERO_SHOT:
        return "#4d4d4d", "s"
    names = parse_combo(row)
    if len(names) == 1:
        return LOSSES[names[0]].color, LOSSES[names[0]].marker
    combos = [r for r in all_combinations() if "+" in r]
    i = combos.index(combo_key(names)) if combo_key(names) in combos else len(combos)
    return _COMBO_COLORS[i % len(_COMBO_COLORS)], _COMBO_MARKERS[i % len(_COMBO_MARKERS)]


# --------------------------------------------------------------------------------------------
# Optuna parameter names of the loss part of a search space


def use_param(loss: str) -> str:
    """Name of the on/off parameter of ``loss`` in a study (``use_cosent``)."""
    return f"use_{loss}"


def weight_param(loss: str) -> str:
    return f"w_{loss}"


def tau_param(loss: str) -> str:
    return f"tau_{loss}"


def param_loss(param: str) -> Optional[tuple[str, str]]:
    """``"tau_cosent"`` -> ``("tau", "cosent")``; None when the name is not a loss parameter."""
    for loss in LOSSES:
        for kind, name in (("use", use_param(loss)), ("w", weight_param(loss)), ("tau", tau_param(loss))):
            if param == name:
                return kind, loss
    return None


def parse_loss_values(text: str, what: str = "--weights", taus: bool = False) -> dict[str, float]:
    """``"cosent=1,ibn=0"`` -> ``{"cosent": 1.0, "ibn": 0.0}``; ValueError with one line."""
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in str(text).split(","))):
        if "=" not in item:
            raise ValueError(f"{what} item '{item}' is not NAME=VALUE; write e.g. {what} cosent=1,angle=1")
        name, value = (s.strip() for s in item.split("=", 1))
        try:
            key = canonical_loss(name)
        except ValueError:
            raise ValueError(f"{what}: unknown loss '{name}'; use {', '.join(LOSSES)}") from None
        if taus:
            try:
                check_takes_tau(key)
            except ValueError as exc:
                raise ValueError(f"{what}: {exc}") from None
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{what}: value '{value}' for {name} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{what}: value for {name} must be finite, got {value}")
        out[key] = number
    return out


load_plugins()
