"""What every objective does: record, (zero-shot once), fine-tune, score, record, upload artifacts.

One :class:`WorkerContext` lives per worker process; it keeps the prepared data (loaded, split,
subsampled and - through :mod:`tuner.models._tokenize` - tokenised once) for every data configuration the
worker has seen, so consecutive trials on the same datasets do not reload anything.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Callable, Iterator, Optional

from objectives._study_records import ensure_zero_shot
from tuner.config import RunConfig
from tuner.engine._memory import release_memory
from tuner.errors import TunerError
from tuner.storage import StorageHandle, StorageUnavailable
from tuner.storage._artifacts import upload_trial_artifacts
from tuner.study import StudySpec, is_empty_draw

_log = logging.getLogger(__name__)
#: The trial attr a running trial's training progress is kept in: {"step": k, "steps": N, "run": i, "runs": n}.
TRAIN_PROGRESS = "train_progress"
#: Seconds between two ``train_progress`` writes of a running trial (one small storage write each).
PROGRESS_EVERY_S = 10.0


def tuner_version() -> str:
    try:
        import tuner

        if getattr(tuner, "__version__", None):
            return str(tuner.__version__)
    except ImportError:  # pragma: no cover
        pass
    try:
        return version("tuner")
    except Exception:  # noqa: BLE001 - running from a source checkout
        return "unknown"


def library_versions() -> dict[str, str]:
    import optuna
    import torch
    import transformers

    return {"tuner": tuner_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "optuna": optuna.__version__, "python": platform.python_version()}


def describe_device(device: Any) -> str:
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def peak_memory_mb(device: Any) -> float:
    """Peak GPU memory allocated in this trial (CUDA) or the worker's peak RSS (CPU), in MiB."""
    import torch

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)


def is_oom(exc: BaseException) -> bool:
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, (RuntimeError, MemoryError)) and ("out of memory" in str(exc).lower()
                                                            or isinstance(exc, MemoryError))


@dataclass
class WorkerContext:
    """Per-worker state shared by its trials."""

    spec: StudySpec
    handle: StorageHandle
    study_name: str
    device: Any  # torch.device
    worker: str  # ``host:pid``, recorded with each trial (tuner.service's worker_label)
    artifact_store: Any = None
    progress: bool = False
    on_trained: Callable[[Any, list], None] = lambda trial, outcomes: None  # (trial, its runs): MLflow's loss curves
    _data: dict = field(default_factory=dict)

    def prepared(self, config: RunConfig) -> Any:
        """Load/split/subsample/tokenise the data of ``config`` once per worker (cached by its data fields)."""
        from tuner.engine._run import prepare_data

        key = (tuple(config.train), tuple(config.eval_sets), config.task, config.protocol, config.data_dir,
               config.seed, config.max_train_examples, config.max_eval_examples, config.batch_size, config.nli_neutral)
        if key not in self._data:
            if len(self._data) >= 8:  # bounded: a grid walks many datasets
                self._data.pop(next(iter(self._data)))
            self._data[key] = prepare_data(config)
        return self._data[key]


def run_objective(trial: Any, config: RunConfig, ctx: WorkerContext, *, task: str) -> float:
    """Fine-tune and score one trial; returns the mean dev score (never test).

    With ``repeats = N`` in a tpe/random study the trial trains its configuration with N seeds
    and its value and ``scores.*`` are the means (``scores_by_seed`` keeps each seed's); a grid
    study makes the seed a cell axis instead, so ``config.seed`` is already the cell's."""
    import optuna
    import torch

    from tuner.engine._run import run_finetune

    spec = ctx.spec
    if task != spec.task:
        raise TunerError(f"objective for '{task}' used with a '{spec.task}' study")
    if is_empty_draw(trial.params):
        trial.set_user_attr("failure", "no_loss: every loss was drawn off, so there is nothing to train")
        raise optuna.TrialPruned("no loss on")
    start, cpu_start = time.perf_counter(), time.process_time()
    zero_shot_cpu = 0.0  # the study's one-off zero-shot scoring is not this trial's compute
    device = ctx.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = trial.params.get("model", spec.models[0])
    _record_static(trial, config, ctx, model)
    seeds = [config.seed] if spec.is_grid else spec.seeds

    def finish_attrs() -> None:
        trial.set_user_attr("wall_s", round(time.perf_counter() - start, 3))
        trial.set_user_attr("cpu_s", round(time.process_time() - cpu_start - zero_shot_cpu, 3))
        trial.set_user_attr("peak_mem_mb", peak_memory_mb(device))

    def on_eval(step: int, score: float) -> None:
        if math.isfinite(score):
            trial.report(score, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: dev {spec.metric} {score:.4f}")

    outcomes = []
    with _failures_recorded(trial, finish_attrs, device):
        for i, seed in enumerate(seeds):
            steps = StepReporter(trial, run=i + 1, runs=len(seeds))
            run = config.replace(seed=seed)
            data = ctx.prepared(run)
            if i == 0:
                before = time.process_time()
                ensure_zero_shot(ctx, trial.study, model, run, data)
                zero_shot_cpu = time.process_time() - before
            report = on_eval if (run.eval_every and i == 0) else None  # prune on the first seed's curve
            outcomes.append(run_finetune(run, device=device, on_eval=report, progress=ctx.progress, prepared=data,
                                         on_step=steps))
    ctx.on_trained(trial, outcomes)
    value = _record_scores(trial, outcomes)
    finish_attrs()
    _upload(trial, ctx, model, outcomes[0])
    return value


class StepReporter:
    """``on_step`` of a trial's training: the trial attr ``train_progress`` (step k of N, seed i of n),
    written at the first step and then at most every ``every_s`` seconds, so ``status`` and the live
    line of ``optimize`` show where a long trial is and can project its end from its step rate.

    A write that fails is logged once and skipped: progress is never worth a failed trial. A storage
    that stayed unreachable for the whole retry window (:class:`StorageUnavailable`) stops the trial
    instead: its result could not be recorded, its heartbeat is failing too (another worker re-runs
    the cell), and retrying at every later step would stretch each step by the retry window."""

    def __init__(self, trial: Any, *, run: int = 1, runs: int = 1, every_s: float = PROGRESS_EVERY_S) -> None:
        self.trial, self.run, self.runs, self.every_s = trial, run, runs, every_s
        self._last: Optional[float] = None
        self._warned = False

    def __call__(self, step: int, total: int) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.every_s and step < total:
            return
        self._last = now
        try:
            self.trial.set_user_attr(TRAIN_PROGRESS, {"step": step, "steps": total, "run": self.run,
                                                      "runs": self.runs})
        except StorageUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - the storage's own retries already ran
            if not self._warned:
                _log.warning("trial %s: could not record its training progress: %s", self.trial.number, exc)
                self._warned = True


@contextlib.contextmanager
def _failures_recorded(trial: Any, finish_attrs: Callable[[], None], device: Any) -> Iterator[None]:
    """Give every way a trial can fail a ``failure`` attr (pruned, nan_loss, bad input, out_of_memory)."""
    import optuna
    import torch

    try:
        yield
    except optuna.TrialPruned as exc:
        trial.set_user_attr("failure", f"pruned: {exc}")
        finish_attrs()
        raise
    except FloatingPointError as exc:
        trial.set_user_attr("failure", f"nan_loss: {exc}")
        finish_attrs()
        raise optuna.TrialPruned(f"nan loss: {exc}") from None
    except StorageUnavailable:
        raise
    except TunerError as exc:
        trial.set_user_attr("failure", f"bad input: {exc}")
        finish_attrs()
        raise
    except (RuntimeError, MemoryError) as exc:
        if not is_oom(exc):
            raise
        trial.set_user_attr("failure", f"out_of_memory: {str(exc).splitlines()[0][:300]}")
        finish_attrs()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise
    finally:
        release_memory()


def _record_static(trial: Any, config: RunConfig, ctx: WorkerContext, model: str) -> None:
    """What the trial trains, before it trains (a failed trial still says what it was)."""
    spec = ctx.spec
    static = {
        "model": model, "loss": config.loss, "losses": list(config.losses), "weights": config.active_weights,
        "taus": {k: v for k, v in config.taus.items() if k in config.losses},
        "pooling": str(config.pooling) if config.pooling is not None else "model default",
        "train_datasets": config.train, "eval_datasets": config.eval_sets, "task": spec.task, "metric": spec.metric,
        "protocol": spec.protocol, "config": config.to_dict(), "device": describe_device(ctx.device),
        "versions": library_versions(), "worker": ctx.worker,
    }
    for key, value in static.items():
        trial.set_user_attr(key, value)


def _record_scores(trial: Any, outcomes: list) -> float:
    """``scores.<split>.<dataset>`` (the mean over seeds), the run config as it ran; returns mean dev."""
    import numpy as np

    first = outcomes[0]
    for split, per_dataset in first.scores.items():
        for name in per_dataset:
            values = [o.scores[split][name] for o in outcomes]
            trial.set_user_attr(f"scores.{split}.{name}", float(np.mean(values)))
    if len(outcomes) > 1:
        trial.set_user_attr("scores_by_seed", {str(o.config.seed): o.scores for o in outcomes})
    _record_items(trial, outcomes)
    trial.set_user_attr("pooling", str(first.config.pooling))
    trial.set_user_attr("config", first.config.to_dict())
    trial.set_user_attr("train_pairs_per_s", round(float(np.mean([o.train.pairs_per_s for o in outcomes])), 2))
    trial.set_user_attr("trainable_params", int(first.train.trainable_params))  # LoRA: the adapters only
    if first.mining is not None:  # mined hard negatives: counts, similarities, cache key (docs/data.md)
        trial.set_user_attr("mining", first.mining)
    return float(np.mean([o.dev_score for o in outcomes]))


def _record_items(trial: Any, outcomes: list) -> None:
    """``items.<split>.<dataset>``: per-item outputs (the mean over the trial's seeds), for the export's bootstrap."""
    import numpy as np

    from tuner.exporter.items import encode_items, item_values, items_key

    seeds = [o.config.seed for o in outcomes]
    for split, per_dataset in outcomes[0].details.items():
        for name, result in per_dataset.items():
            found = [item_values(o.details.get(split, {}).get(name, {})) for o in outcomes]
            if any(f is None for f in found):
                continue
            try:
                record = encode_items(np.mean([f[1] for f in found], axis=0), found[0][0], seeds)
            except ValueError as exc:
                _log.warning("not recorded: %s: %s", items_key(split, name), exc)
                continue
            trial.set_user_attr(items_key(split, name), record)


def _upload(trial: Any, ctx: WorkerContext, model: str, outcome: Any) -> None:
    """Loss curve and config of the (first seed's) run as dashboard artifacts."""
    if ctx.artifact_store is None:
        return
    config = outcome.config
    record = {"trial": trial.number, "study": ctx.study_name, "params": trial.params, "model": model,
              "loss": config.loss, "config": config.to_dict(), "scores": outcome.scores,
              "metric": outcome.metric, "steps": outcome.train.steps, "precision": outcome.train.precision}
    upload_trial_artifacts(ctx.artifact_store, trial, losses=outcome.train.losses,
                           parts=outcome.train.loss_parts, config=json.loads(json.dumps(record, default=str)),
                           title=f"trial {trial.number}: {config.loss} on {'+'.join(config.train)}")
