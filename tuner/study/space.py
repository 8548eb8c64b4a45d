"""Search spaces: ``[search]`` of a study file -> Optuna parameters -> a :class:`RunConfig` per trial.

**Which losses are on** is a parameter of its own (``losses`` in ``[search]``):

* ``losses = "any"``: each trial draws ``use_<loss>`` (True/False) for every registered loss, so
  all 15 non-empty combinations of the four built-in losses, cosine-MSE included, are reachable,
  and parameter importances show each on/off choice. A draw with every loss off trains nothing:
  the trial is pruned at once (reason ``no_loss``) and TPE learns to avoid it; with random
  sampling that is 1 draw in 16.
* ``losses = ["cosent", "cosent+ibn", ...]``: one categorical parameter ``losses`` over the listed
  combinations.
* ``losses = "cosent+angle"``: a fixed combination (nothing drawn).

Weights (``w_<loss>``) and temperatures (``tau_<loss>``) are conditional: drawn only for the
losses that are on (a weight then must be > 0; it defaults to 1 when not searched). Without a
``losses`` key the file is read as before this existed: every ``w_<loss>`` listed is drawn and a
loss is on when its weight is > 0 -- note that a range like [0, 1] is never exactly 0, so such a
study never switches a loss off.

Conditional parameters are why the TPE sampler runs with ``multivariate=True, group=True``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from tuner.config import RunConfig, check_prompt
from tuner.data.mining import INTEGER, SEARCHABLE, MiningSettings, check_mining
from tuner.data.mining import check_value as check_mine_value
from tuner.errors import ConfigError
from tuner.losses.registry import (
    LOSSES,
    all_combinations,
    combo_key,
    param_loss,
    parse_combo,
    tau_param,
    use_param,
    weight_param,
)
from tuner.models._lora import LORA_FIELDS, check_lora_value
from tuner.models._pooling import POOLING_NAMES
from tuner.study.checks import Checker, pooling_value, show

#: Non-loss parameters a study may search, in the order they are drawn. ``prompt`` takes choices of
#: templates ("none" = no prompt); ``lora_r`` 0 is full fine-tuning (tuner.models._lora).
#: ``mine_<option>``: hard-negative mining of unscored pairs (tuner.data.mining), each setting mined once.
MINE_PARAMS = tuple("mine_" + name for name in SEARCHABLE)
RUN_PARAMS = ("pooling", "lr", "epochs", "batch_size", "warmup_ratio", "prompt", "lora_r", "lora_alpha",
              "lora_dropout", *MINE_PARAMS)
NO_LOSS = "no_loss"


def search_keys() -> tuple[str, ...]:
    """Keys allowed in ``[search]``, derived from the loss registry."""
    loss_keys = [k for name, spec in LOSSES.items()
                 for k in (weight_param(name), *( [tau_param(name)] if spec.has_tau else []))]
    return ("losses", *loss_keys, *RUN_PARAMS)


def _is_tau(name: str) -> bool:
    kind = param_loss(name)
    return kind is not None and kind[0] == "tau"


def _log_default(name: str) -> bool:
    """lr and temperatures are searched on a log scale unless the file says otherwise."""
    return name == "lr" or _is_tau(name)


@dataclass(frozen=True)
class Param:
    """One searched (or fixed) hyperparameter."""

    name: str
    kind: str  # "float" | "int" | "categorical" | "fixed"
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: tuple = ()
    value: Any = None

    def suggest(self, trial: Any) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log, step=self.step)

    def distribution(self) -> Any:
        """The Optuna distribution this parameter is drawn from (None when it is fixed)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "fixed":
            return None
        if self.kind == "categorical":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.value!r}"
        if self.kind == "categorical":
            return "{" + ", ".join(map(repr, self.choices)) + "}"
        return f"[{self.low:g}, {self.high:g}]{' log' if self.log else ''}"




def parse_param(check: Checker, name: str, value: Any) -> Param:
    """One ``[search]`` entry -> a :class:`Param` (range, choice or fixed value)."""
    key = f"search.{name}"
    if name == "pooling":
        return _pooling_param(check, key, value)
    if name == "prompt":
        return _prompt_param(check, key, value)
    integer = name in ("epochs", "batch_size", "lora_r", *("mine_" + n for n in INTEGER))
    minimum = {"epochs": 1, "batch_size": 2}.get(name)

    def num(v: Any, k: str) -> float:
        if name in MINE_PARAMS and name != "mine_num_negatives":  # the mining option's own check
            try:
                return float(check_mine_value(name.removeprefix("mine_"), v, k))
            except ConfigError as exc:
                raise check.fail(k, exc.problem) from None
        if name in LORA_FIELDS:  # LoRA's own check (tuner.models._lora), after the file's type check
            try:
                return float(check_lora_value(name, check.integer(v, k, None) if integer else check.number(v, k)))
            except ConfigError as exc:
                raise check.fail(k, exc.problem) from None
        if integer:
            return float(check.integer(v, k, int(minimum or 0)))
        if _is_tau(name) or name == "lr":
            return check.number(v, k, positive=True)
        if name == "warmup_ratio":
            return check.number(v, k, minimum=0.0, below=1.0)
        return check.number(v, k, minimum=0.0)  # weights (> 0 enforced for on/off spaces)

    def categorical(values: list, k: str) -> Param:
        if not values:
            raise check.fail(k, "is empty; list at least one value")
        parsed = [num(v, f"{k}[{i}]") for i, v in enumerate(values)]
        parsed = [int(v) for v in parsed] if integer else parsed
        if len(set(parsed)) != len(parsed):
            raise check.fail(k, "lists a value twice; remove the duplicate")
        return Param(name, "categorical", choices=tuple(parsed)) if len(parsed) > 1 else \
            Param(name, "fixed", value=parsed[0])

    def ranged(low: Any, high: Any, log: bool, step: Any, k: str) -> Param:
        lo, hi = num(low, f"{k}.low" if isinstance(value, dict) else f"{k}[0]"), \
            num(high, f"{k}.high" if isinstance(value, dict) else f"{k}[1]")
        if lo >= hi:
            raise check.fail(k, f"low {low:g} is not below high {high:g}; write [low, high] with low < high "
                                "(or a single number to fix the value)")
        if log and lo <= 0:
            raise check.fail(k, f"a log range needs low > 0, got {low:g}")
        if step is not None:
            step = check.number(step, f"{k}.step", positive=True)
            if log:
                raise check.fail(k, "step and log=true cannot be combined; drop one")
        return Param(name, "int" if integer else "float", low=lo, high=hi, log=log, step=step)

    if name in ("batch_size", "lora_r") and isinstance(value, list):
        return categorical(value, key)
    if isinstance(value, dict):
        check.known(value, ("low", "high", "log", "step", "choices"), key + ".")
        if "choices" in value:
            if set(value) != {"choices"}:
                raise check.fail(key, "use either choices or low/high, not both")
            if not isinstance(value["choices"], list):
                raise check.fail(key + ".choices", f"must be a list, got {show(value['choices'])}")
            return categorical(value["choices"], key + ".choices")
        if "low" not in value or "high" not in value:
            raise check.fail(key, "a range needs both low and high, e.g. { low = 5.0, high = 50.0 }")
        log = value.get("log", _log_default(name))
        if not isinstance(log, bool):
            raise check.fail(key + ".log", f"must be true or false, got {show(log)}")
        return ranged(value["low"], value["high"], log, value.get("step"), key)
    if isinstance(value, list):
        if len(value) != 2:
            raise check.fail(key, f"a list means a range [low, high] and needs 2 numbers, got {len(value)}; "
                                  "to choose between values write { choices = [...] }")
        return ranged(value[0], value[1], _log_default(name), None, key)
    fixed = num(value, key)
    return Param(name, "fixed", value=int(fixed) if integer else fixed)


def _pooling_param(check: Checker, key: str, value: Any) -> Param:
    """``pooling``: one pooling, or a list (or ``{ choices = [...] }``) of them to choose from."""
    if isinstance(value, dict):
        check.known(value, ("choices",), key + ".")
        value = value.get("choices", [])
    if isinstance(value, list):
        if not value:
            raise check.fail(key, f"is empty; list at least one pooling ({', '.join(POOLING_NAMES)})")
        choices = [pooling_value(check, v, f"{key}[{i}]") for i, v in enumerate(value)]
        if len(set(choices)) != len(choices):
            raise check.fail(key, "lists a pooling twice; remove the duplicate")
        return Param("pooling", "categorical", choices=tuple(choices)) if len(choices) > 1 else \
            Param("pooling", "fixed", value=choices[0])
    return Param("pooling", "fixed", value=pooling_value(check, value, key))


def _prompt_param(check: Checker, key: str, value: Any) -> Param:
    """``prompt``: one template or ``{ choices = [...] }`` of templates; ``"none"`` is no prompt."""
    choices = value.get("choices") if isinstance(value, dict) else value
    if isinstance(value, dict):
        check.known(value, ("choices",), key + ".")
    items = choices if isinstance(choices, list) else [choices]
    if not items:
        raise check.fail(key, "is empty; list prompt templates with {text}, or \"none\" for no prompt")
    parsed = []
    for i, item in enumerate(items):
        try:
            parsed.append(check_prompt(item) or "none")
        except ConfigError as exc:
            raise check.fail(f"{key}[{i}]" if len(items) > 1 else key, exc.problem) from None
    if len(set(parsed)) != len(parsed):
        raise check.fail(key, "lists a prompt twice; remove the duplicate")
    return Param("prompt", "categorical", choices=tuple(parsed)) if len(parsed) > 1 else \
        Param("prompt", "fixed", value=parsed[0])


@dataclass(frozen=True)
class LossChoice:
    """How a trial chooses its losses: ``mode`` is ``any`` (use_<loss> flags), ``list`` (one
    categorical over ``combos``), ``fixed`` (``combos[0]``) or ``legacy`` (weights decide)."""

    mode: str = "legacy"
    combos: tuple[str, ...] = ()
    names: tuple[str, ...] = ()  # "any": the losses a trial may turn on (() = every registered loss)

    @property
    def pool(self) -> tuple[str, ...]:
        return self.names or tuple(LOSSES)

    def draw(self, trial: Any) -> Optional[tuple[str, ...]]:
        """The losses this trial turns on; () when every flag was drawn off; None in legacy mode."""
        if self.mode == "any":
            return tuple(n for n in self.pool if trial.suggest_categorical(use_param(n), [True, False]))
        if self.mode == "list":
            return parse_combo(trial.suggest_categorical("losses", list(self.combos)))
        if self.mode == "fixed":
            return parse_combo(self.combos[0])
        return None

    def reachable(self) -> list[str]:
        """Every combination a trial can train with (legacy mode: not known in advance -> [])."""
        if self.mode == "any":
            return all_combinations(self.pool)
        return list(self.combos)

    def describe(self) -> str:
        if self.mode == "any":
            of = f" of {', '.join(self.names)}" if self.names else ""
            return f"any of {len(all_combinations(self.pool))} combinations{of} (use_<loss> on/off)"
        if self.mode == "legacy":
            return "decided by the weights (a loss is on when its weight is > 0)"
        return "{" + ", ".join(self.combos) + "}" if self.mode == "list" else self.combos[0]


@dataclass(frozen=True)
class SearchSpace:
    """The ``[search]`` of a tpe/random study."""

    losses: LossChoice = field(default_factory=LossChoice)
    params: dict[str, Param] = field(default_factory=dict)  # w_*, tau_*, pooling, lr, ... in draw order

    def sample(self, trial: Any, base: RunConfig) -> RunConfig:
        """Draw this trial's parameters and return its run config (``base`` + the draws).

        In an on/off space, a draw with every loss off returns ``base`` with all weights 0 and
        :func:`is_empty_draw` true for the trial: the objective prunes it without training."""
        on = self.losses.draw(trial)
        weights = dict(base.weights)
        taus = dict(base.taus)
        if on is None:  # legacy: every listed weight is drawn; > 0 means on
            for name in LOSSES:
                if weight_param(name) in self.params:
                    weights[name] = float(self.params[weight_param(name)].suggest(trial))
        else:
            weights = {name: 0.0 for name in LOSSES}
            for name in on:
                p = self.params.get(weight_param(name))
                weights[name] = float(p.suggest(trial)) if p is not None else 1.0
        for name, spec in LOSSES.items():
            p = self.params.get(tau_param(name))
            if spec.has_tau and p is not None and (on is None or name in on):
                taus[name] = float(p.suggest(trial))
        changes: dict[str, Any] = {"weights": weights, "taus": taus}
        for name in RUN_PARAMS:
            if name in self.params:
                changes[name] = self.params[name].suggest(trial)
        return base.replace(**changes)

    def describe(self) -> dict[str, str]:
        out = {"losses": self.losses.describe()}
        out.update({k: p.describe() for k, p in self.params.items()})
        return out


def is_empty_draw(params: dict[str, Any]) -> bool:
    """True when an on/off draw switched every loss off (nothing to train)."""
    flags = [f for f in (params.get(use_param(n)) for n in LOSSES) if f is not None]
    return bool(flags) and all(f is False for f in flags)


def parse_losses(check: Checker, value: Any) -> LossChoice:
    """``[search] losses``: "any", a list of combinations, or one combination."""
    key = "search.losses"
    if isinstance(value, str) and value.strip().lower() in ("any", "all"):
        return LossChoice("any")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise check.fail(key, f"must be \"any\", a combination like \"cosent+ibn\" or a list of them, got {show(value)}")
    combos = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise check.fail(f"{key}[{i}]", f"must be a combination like \"cosent+ibn\", got {show(item)}")
        try:
            combos.append(combo_key(parse_combo(item)))
        except ValueError as exc:
            raise check.fail(f"{key}[{i}]" if len(items) > 1 else key, str(exc)) from None
    if len(set(combos)) != len(combos):
        raise check.fail(key, "lists a combination twice; remove the duplicate")
    return LossChoice("fixed", tuple(combos)) if len(combos) == 1 else LossChoice("list", tuple(combos))


def parse_search(check: Checker, raw: dict, models: list[str]) -> SearchSpace:
    """Validate ``[search]`` -> :class:`SearchSpace` (one-line errors naming the key)."""
    if not isinstance(raw, dict) or not raw:
        raise check.fail("search", "is missing or empty; list what to search, e.g. losses = \"any\" and "
                                   "lr = [1e-5, 1e-4]")
    check.known(raw, search_keys(), "search.")
    losses = parse_losses(check, raw["losses"]) if "losses" in raw else LossChoice()
    params: dict[str, Param] = {}
    for k in search_keys()[1:]:  # fixed order: the same params in the same order every trial
        if k in raw:
            params[k] = parse_param(check, k, raw[k])
            kind = param_loss(k)
            if kind is not None and losses.mode != "legacy":
                _check_conditional(check, k, kind, params[k], losses)
    _check_mining_extremes(check, params)
    searched = any(p.kind != "fixed" for p in params.values()) or losses.mode in ("any", "list")
    if not searched and len(models) == 1:
        raise check.fail("search", "fixes every value, so there is nothing to search; give at least one range "
                                   "or choice")
    return SearchSpace(losses, params)


def _check_conditional(check: Checker, key: str, kind: tuple[str, str], param: Param, losses: LossChoice) -> None:
    what, loss = kind
    reachable = {n for combo in losses.reachable() for n in parse_combo(combo)}
    if loss not in reachable:
        raise check.fail(f"search.{key}", f"{loss} is never on in this study (search.losses = "
                                          f"{losses.describe()}); remove the key or add {loss} to search.losses")
    if what == "w":
        low = param.value if param.kind == "fixed" else (min(param.choices) if param.choices else param.low)
        if low is None or float(low) <= 0:
            raise check.fail(f"search.{key}", "is the weight of a loss that is on, so it must be > 0; "
                                              "search.losses decides whether the loss is on")


def _check_mining_extremes(check: Checker, params: dict[str, Param]) -> None:
    """Every draw of the ``mine_*`` ranges must be a valid mining (range_min below range_max, room for the
    negatives): checked on the hardest combination, so no trial fails on it later."""
    def bound(name: str, high: bool) -> Any:
        p = params.get("mine_" + name)
        if p is None:
            return None
        values = [p.value] if p.kind == "fixed" else (list(p.choices) or [p.low, p.high])
        return max(values) if high else min(values)

    if not any(k in params for k in MINE_PARAMS):
        return
    worst = {"num_negatives": bound("num_negatives", True) or 1, "range_min": bound("range_min", True) or 0,
             "range_max": bound("range_max", False), "max_score": bound("max_score", False),
             "min_score": bound("min_score", True)}
    try:
        check_mining(MiningSettings(**{k: int(v) if k in INTEGER and v is not None else v for k, v in worst.items()}),
                     "mine_")
    except ConfigError as exc:
        raise check.fail(f"search.{exc.key}", f"{exc.problem} (for the draw that combines the ranges' ends)") from None

