"""One description of a run: :class:`RunConfig`.

A fine-tune (``tuner finetune``, ``tuner.api.finetune``) and every study trial are one
``RunConfig``: model, data, protocol, loss weights and temperatures, pooling, optimisation and
budget, seed. It is the single source the rest derives from:

* the study parser fills its ``[train]`` / ``[budget]`` tables into one (:meth:`RunConfig.replace`
  with the file's keys) and the search space returns one per trial;
* the engine and the training loop read it; nothing else describes a run;
* the ``finetune`` CLI flags, their defaults and help text are generated from its fields
  (:func:`add_arguments`, :func:`from_arguments`);
* it round-trips through JSON (the trial record ``config``, ``tuner.json`` beside a saved model,
  ``best_finetune.json``) and through a ``finetune`` command line (:meth:`RunConfig.to_argv`).

It imports no torch. Validation names the bad key (:class:`ConfigError` is a
:class:`~tuner.errors.TunerError` with ``.key``), so a study file can say which of its keys is wrong.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

from tuner.config._checks import OPTIONAL_INTS, check_int_setting, check_names, check_text, fmt_default, fmt_value
from tuner.data.mining import MiningSettings, check_mining
from tuner.data.shapes import check_columns_mapping, parse_columns
from tuner.errors import ConfigError, TunerError, check_number
from tuner.losses.checks import (
    DEFAULT_DUPLICATES,
    DUPLICATE_RULES,
    active_weights,
    check_duplicates,
    check_positive_threshold,
    check_taus,
    check_weights,
)
from tuner.losses.registry import default_taus, parse_loss_values, row_of_weights
from tuner.models._decoder import check_prompt
from tuner.models._lora import LORA_FIELDS, LoraSettings, check_lora_value
from tuner.models._pooling import POOLING_NAMES, Pooling, parse_pooling

DEFAULT_MODEL = "all-MiniLM-L6-v2"
TASKS = ("sts", "classification", "nli")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MINE_OPTIONS = ("num_negatives", "range_min", "range_max", "margin", "relative_margin", "max_score", "min_score",
                "sampling")  # the mine_<option> fields


def _f(default: Any = None, *, help: str, section: Optional[str] = None, factory: Any = None,
       cli: bool = True, metavar: Optional[str] = None) -> Any:
    """A field with its help text, its study-file table (``train``/``budget``) and CLI exposure."""
    meta = {"help": help, "section": section, "cli": cli, "metavar": metavar}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    """Everything that defines one fine-tune-and-evaluate run."""

    # ---- what to train and where to score it
    model: str = _f(DEFAULT_MODEL, help="Hugging Face id, local folder, or all-MiniLM-L6-v2 (bundled, offline)")
    train: list[str] = _f(factory=lambda: ["stsb"], metavar="DATASETS",
                          help="training dataset(s): built-in names or files, comma-separated")
    eval: list[str] = _f(factory=list, metavar="DATASETS",
                         help="dataset(s) scored on dev and test (default: the training datasets)")
    task: Optional[str] = _f(None, help="sts, classification or nli (train on NLI, score STS; default: from the datasets)")
    protocol: str = _f("standard", help="train/dev/test splits: standard (official splits, seeded splits of test-only "
                                        "sets), seed (the seed's 70/30), disjoint, or nli-transfer (task nli)")
    data_dir: Optional[str] = _f(None, help="folder with the layout of shared/data (default: "
                                            "$TUNER_DATA_DIR, then ../shared/data)")
    columns: dict[str, str] = _f(factory=dict, section="train", metavar="NAME=COLUMN,...",
                                 help="the training files' column names for tuner's, e.g. anchor=question,"
                                      "positive=answer,negative=wrong (default: anchor, positive, negative, ...)")
    # ---- the loss: sum_k weights[k] * loss_k(tau_k)
    weights: dict[str, float] = _f(factory=dict, section="train", metavar="LOSS=W,...",
                                   help="loss weights, e.g. cosent=1,angle=1 (missing = 0 = off; all 0 = cos_mse alone)")
    taus: dict[str, float] = _f(factory=default_taus, section="train", metavar="LOSS=TAU,...",
                                help="loss temperatures, e.g. cosent=20,ibn=20,angle=1 (missing = default)")
    ibn_positive_threshold: float = _f(0.6, section="train",
                                       help="normalised score (0..1) from which a pair is an in-batch-negatives "
                                            "positive (0.6 = 3 of 5)")
    ibn_duplicates: str = _f(DEFAULT_DUPLICATES, section="train",
                             help=f"in-batch negatives: a candidate whose text is identical to the anchor's own "
                                  f"positive is {' / '.join(DUPLICATE_RULES)}: labelled positive (the seed's rule), "
                                  "dropped from the candidates, or left a negative")
    nli_neutral: Union[str, float] = _f("drop", section="train", help="NLI neutral pairs for the pair losses: "
                                        "drop (as AnglE) or a score in 0..1 (entailment 1, contradiction 0)")
    pooling: Optional[Pooling] = _f(None, section="train", help=f"{', '.join(POOLING_NAMES)} or a token index "
                                                                "(default: the model's own)")
    # ---- hard-negative mining of (anchor, positive) pairs with the base model (tuner.data.mining)
    mine_num_negatives: int = _f(0, section="train", help="hard negatives mined per (anchor, positive) pair with the "
                                 "run's base model before training (0 = no mining; unscored pairs only)")
    mine_range_min: int = _f(0, section="train", help="mining: skip the candidates ranked above this (0 = the most "
                             "similar non-positive)")
    mine_range_max: Optional[int] = _f(None, section="train", help="mining: candidates ranked below this only (default: "
                                       "range_min + num_negatives, x10 when a margin or score bound is set)")
    mine_margin: Optional[float] = _f(None, section="train", help="mining: a negative's similarity is at most the "
                                      "positive's minus this (default: no margin)")
    mine_relative_margin: Optional[float] = _f(None, section="train", help="mining: at most positive - |positive| x this, "
                                               "e.g. 0.05 = TopK-PercPos 95%% (default: none)")
    mine_max_score: Optional[float] = _f(None, section="train", help="mining: a negative's similarity is at most this "
                                         "(default: no bound)")
    mine_min_score: Optional[float] = _f(None, section="train", help="mining: and at least this (default: no bound)")
    mine_sampling: str = _f("top", section="train", help="mining: top (the most similar that pass) or random (a "
                            "seeded draw of them)")
    # ---- optimisation
    lr: float = _f(2e-5, section="train", help="peak learning rate (AdamW, linear warmup and decay)")
    batch_size: int = _f(32, section="train", help="pairs per batch")
    max_seq_length: int = _f(128, section="train", help="tokens per sentence (longer ones are cut)")
    warmup_ratio: float = _f(0.1, section="train", help="share of the steps spent warming up, in [0, 1)")
    weight_decay: float = _f(0.01, section="train", help="AdamW weight decay")
    max_grad_norm: float = _f(1.0, section="train", help="gradient clipping norm (0 = off)")
    precision: str = _f("auto", section="train", help="auto (bf16/fp16 on GPU, fp32 on CPU), fp32, bf16, fp16")
    length_grouping: bool = _f(True, section="train", help="batch sentences of similar length (less padding)")
    gradient_checkpointing: bool = _f(False, section="train", help="recompute activations in the backward pass: "
                                      "less memory, slower steps (large decoders)")
    # ---- decoder LLMs as encoders (tuner.models._decoder, tuner.models._lora)
    prompt: Optional[str] = _f(None, section="train", help="template around every sentence, {text} where it goes, "
                               "in training and scoring alike (e.g. PromptEOL's 'This sentence : \"{text}\" means "
                               "in one word:\"'; default: none)")
    lora_r: int = _f(0, section="train", help="LoRA rank: > 0 trains only LoRA adapters (peft), 0 = full fine-tuning")
    lora_alpha: Optional[float] = _f(None, section="train", help="LoRA alpha; scale = alpha / rank (default: the rank)")
    lora_dropout: float = _f(0.0, section="train", help="dropout on the LoRA branch")
    lora_targets: list[str] = _f(factory=list, section="train", metavar="MODULES",
                                 help="modules LoRA adapts, e.g. q_proj,v_proj (default: every linear layer)")
    # ---- budget
    epochs: int = _f(1, section="budget", help="passes over the training pairs")
    max_steps: Optional[int] = _f(None, section="budget", help="stop after this many steps (overrides epochs)")
    max_train_examples: Optional[int] = _f(None, section="budget", help="seeded subsample of the training pairs")
    max_eval_examples: Optional[int] = _f(None, section="budget", help="a stratified sample of every dev/test split (unset: the full files)")
    eval_every: Optional[int] = _f(None, section="budget", help="steps between intermediate dev scores (pruning)")
    seed: int = _f(42, help="seed of the training run (batches, init, subsamples); splits use 42")

    def __post_init__(self) -> None:
        self.validate()

    # ---- derived
    @property
    def losses(self) -> tuple[str, ...]:
        """The losses that are on, in registry order (cosine-MSE alone when every weight is 0)."""
        return tuple(active_weights(self.weights))

    @property
    def loss(self) -> str:
        """The run's row label: its losses joined with ``+`` (``"cosent+ibn"``)."""
        return row_of_weights(self.weights)

    @property
    def active_weights(self) -> dict[str, float]:
        """The weights that train: the losses that are on (``{"cos_mse": 1.0}`` when all are 0)."""
        return active_weights(self.weights)

    @property
    def lora(self) -> LoraSettings:
        """The LoRA settings (:class:`tuner.models._lora.LoraSettings`: ``alpha`` resolved to the rank when unset)."""
        return LoraSettings(self.lora_r, self.lora_alpha, self.lora_dropout, tuple(self.lora_targets))

    @property
    def mining(self) -> Optional[MiningSettings]:
        """The hard-negative mining this run asks for (:mod:`tuner.data.mining`), None when it mines nothing."""
        if not self.mine_num_negatives:
            return None
        return MiningSettings(**{name: getattr(self, "mine_" + name) for name in MINE_OPTIONS})

    @property
    def eval_sets(self) -> list[str]:
        """The scored sets: ``eval``, else the train sets (nli-transfer: the seven STS sets)."""
        from tuner.data.splits import NLI_TRANSFER, NLI_TRANSFER_EVAL

        return list(self.eval or (NLI_TRANSFER_EVAL if self.protocol == NLI_TRANSFER else self.train))

    # ---- validation
    def validate(self) -> None:
        """Normalise and check every field; raises :class:`ConfigError` naming the first bad key."""
        self.model = check_text(self.model, "model")
        self.train = check_names(self.train, "train", allow_empty=False)
        self.eval = check_names(self.eval, "eval", allow_empty=True)
        if self.task is not None and self.task not in TASKS:
            raise ConfigError("task", f"'{self.task}' is unknown; use {' or '.join(TASKS)}")
        from tuner.data.nli import check_neutral
        from tuner.data.splits import ALL_PROTOCOLS, NLI_TRANSFER

        if self.protocol not in ALL_PROTOCOLS:
            raise ConfigError("protocol", f"'{self.protocol}' is unknown; use one of {', '.join(ALL_PROTOCOLS)}")
        if (self.task == "nli") != (self.protocol == NLI_TRANSFER) and self.task is not None:
            raise ConfigError("protocol", f"'{self.protocol}' does not go with task {self.task}; task nli (train on NLI, "
                                          f"score STS) is protocol {NLI_TRANSFER}, the other tasks use the others")
        try:
            neutral = check_neutral(self.nli_neutral)
        except TunerError as exc:
            raise ConfigError("nli_neutral", str(exc).removeprefix("neutral: ")) from None
        self.nli_neutral = "drop" if neutral is None else neutral
        self.weights = check_weights(self.weights)
        self.taus = check_taus(self.taus)
        try:
            self.columns = check_columns_mapping(self.columns)
        except TunerError as exc:
            raise ConfigError("columns", str(exc).removeprefix("columns: ")) from None
        if self.pooling is not None:
            try:
                self.pooling = parse_pooling(self.pooling)
            except TunerError as exc:
                raise ConfigError("pooling", str(exc)) from None
        self._check_mining()
        self.ibn_positive_threshold = check_positive_threshold(self.ibn_positive_threshold)
        self.ibn_duplicates = check_duplicates(self.ibn_duplicates)
        for key in ("lr", "warmup_ratio", "weight_decay", "max_grad_norm"):
            setattr(self, key, check_number(getattr(self, key), key))
        for key in ("batch_size", "max_seq_length", "epochs", "seed", "max_steps", "max_train_examples",
                    "max_eval_examples", "eval_every"):
            setattr(self, key, check_int_setting(getattr(self, key), key))
        checks = (
            ("lr", self.lr > 0, "use a positive learning rate such as 2e-5"),
            ("batch_size", self.batch_size >= 2, "use 2 or more (losses compare pairs within a batch)"),
            ("max_seq_length", self.max_seq_length >= 4, "use 4 or more"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "use a value in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "use 0 or more"),
            ("max_grad_norm", self.max_grad_norm >= 0, "use 0 (off) or more"),
            ("epochs", self.epochs >= 1, "use 1 or more"),
            ("max_steps", self.max_steps is None or self.max_steps >= 1, "use 1 or more, or leave it unset"),
            ("max_train_examples", self.max_train_examples is None or self.max_train_examples >= 2,
             "use 2 or more, or leave it unset"),
            ("max_eval_examples", self.max_eval_examples is None or self.max_eval_examples >= 10,
             "use 10 or more, or leave it unset"),
            ("eval_every", self.eval_every is None or self.eval_every >= 1, "use 1 or more, or leave it unset"),
        )
        for key, ok, fix in checks:
            if not ok:
                raise ConfigError(key, f"is {getattr(self, key)}; {fix}")
        if self.precision not in PRECISIONS:
            raise ConfigError("precision", f"'{self.precision}' is unknown; use one of {', '.join(PRECISIONS)}")
        for key in ("length_grouping", "gradient_checkpointing"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(key, f"must be true or false, got {getattr(self, key)!r}")
        self.prompt = check_prompt(self.prompt)
        for key in LORA_FIELDS:
            setattr(self, key, check_lora_value(key, getattr(self, key)))

    def _check_mining(self) -> None:
        """The ``mine_*`` values, alone and together (:func:`tuner.data.mining.check_mining`), even when off."""
        count = check_int_setting(self.mine_num_negatives, "mine_num_negatives")
        if count < 0:
            raise ConfigError("mine_num_negatives", f"is {count}; use 0 (no mining) or more")
        values = {name: getattr(self, "mine_" + name) for name in MINE_OPTIONS}
        checked = check_mining(MiningSettings(**{**values, "num_negatives": max(count, 1)}), "mine_")
        for name in MINE_OPTIONS:
            setattr(self, "mine_" + name, getattr(checked, name))
        self.mine_num_negatives = count

    # ---- conversions
    def replace(self, **changes: Any) -> "RunConfig":
        """A validated copy with ``changes`` (unknown keys are a :class:`ConfigError`)."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ConfigError(unknown[0], f"unknown run setting; use one of {', '.join(field_names())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (the trial record's ``config``, ``tuner.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True) -> "RunConfig":
        """Inverse of :meth:`to_dict`. ``strict=False`` ignores keys this version does not know
        (records written by a newer tuner)."""
        known = set(field_names())
        unknown = sorted(set(data) - known)
        if unknown and strict:
            raise ConfigError(unknown[0], f"unknown run setting; use one of {', '.join(sorted(known))}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_argv(self) -> list[str]:
        """``finetune`` flags that reproduce this config (only the fields that differ from the defaults)."""
        default = RunConfig()
        argv: list[str] = []
        for f in dataclasses.fields(self):
            if not f.metadata.get("cli", True):
                continue
            value, base = getattr(self, f.name), getattr(default, f.name)
            if f.name == "taus":
                value = {k: v for k, v in value.items() if v != base.get(k)}
                base = {}
            if f.name == "weights":
                value = {k: v for k, v in value.items() if v}
                base = {}
            if value == base or value in (None, [], {}):
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                argv.append(flag if value else "--no-" + f.name.replace("_", "-"))
            elif isinstance(value, dict):
                argv += [flag, ",".join(f"{k}={fmt_value(v)}" for k, v in value.items())]
            elif isinstance(value, list):
                argv += [flag, ",".join(value)]
            else:
                argv += [flag, fmt_value(value)]
        return argv

    def command(self, output: Optional[str] = None) -> str:
        """The shell command that re-runs this config: ``python -m tuner finetune ...``."""
        argv = ["python", "-m", "tuner", "finetune", *self.to_argv()]
        if output:
            argv += ["--output", output]
        return shlex.join(argv)


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(RunConfig))


def section_fields(section: str) -> tuple[str, ...]:
    """Fields a study file sets in its ``[train]`` or ``[budget]`` table."""
    return tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("section") == section)


# --------------------------------------------------------------------------------------------
# CLI flags, generated from the fields


def add_arguments(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per field (``--max-seq-length``), with the field's help and default.

    Flags default to "not given" so :func:`from_arguments` can tell user input from defaults."""
    default = RunConfig()
    for f in dataclasses.fields(RunConfig):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        value = getattr(default, f.name)
        shown = fmt_default(value)
        help_text = f.metadata["help"] if "(default" in f.metadata["help"] else f"{f.metadata['help']} (default: {shown})"
        if isinstance(value, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, metavar=f.metadata.get("metavar"),
                                help=help_text)


def from_arguments(args: argparse.Namespace, base: Optional[RunConfig] = None) -> RunConfig:
    """The config the flags describe: ``base`` (default :class:`RunConfig`) with the given flags."""
    base = base or RunConfig()
    changes: dict[str, Any] = {}
    for name in field_names():
        if name not in vars(args):
            continue
        raw = getattr(args, name)
        changes[name] = _from_text(name, raw, base)
    return base.replace(**changes)


def _from_text(name: str, raw: Any, base: RunConfig) -> Any:
    flag = "--" + name.replace("_", "-")
    if not isinstance(raw, str):
        return raw
    if name in ("train", "eval", "lora_targets"):
        return [s.strip() for s in raw.split(",") if s.strip()]
    if name == "weights":
        return _parse_map(raw, flag, taus=False)
    if name == "columns":
        try:
            return parse_columns(raw, flag)
        except TunerError as exc:
            raise ConfigError(name, str(exc)) from None
    if name == "taus":
        return {**base.taus, **_parse_map(raw, flag, taus=True)}
    kind = type(getattr(RunConfig(), name))
    optional_int = name in OPTIONAL_INTS
    if name == "pooling" or kind is str or name in ("task", "data_dir", "prompt"):
        return raw
    try:
        return int(raw) if (kind is int or optional_int) else float(raw)
    except ValueError:
        want = "an integer" if (kind is int or optional_int) else "a number"
        raise ConfigError(name, f"{flag} '{raw}' is not {want}") from None


def _parse_map(text: str, flag: str, taus: bool) -> dict[str, float]:
    try:
        return parse_loss_values(text, flag, taus=taus)
    except ValueError as exc:
        raise ConfigError(flag.lstrip("-"), str(exc)) from None

