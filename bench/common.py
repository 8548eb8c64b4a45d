"""Shared helpers for the bench scripts.

* quiet, offline environment (set before transformers is imported)
* STS-B data: train pairs, test sentences
* the sentence-transformers reference training loop (a plain loop over a SentenceTransformer)
* timing: warm-up, interleaved repeats, medians
* JSON-line output, RSS readings

Every script prints one JSON object per line on stdout; human notes go to stderr.
"""
from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tuner import jsonsafe  # noqa: E402
from tuner.engine._memory import malloc_trim  # noqa: E402


def quiet_libraries() -> None:
    """Silence transformers / sentence-transformers logging and progress bars."""
    import logging

    for name in ("transformers", "sentence_transformers", "transformers.modeling_utils"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - logging is best effort
        pass


quiet_libraries()


# --------------------------------------------------------------------------------------------- output

def emit(**record: Any) -> None:
    """Print one JSON line (numbers rounded for reading)."""
    def clean(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.5g}") if abs(v) < 1e4 else round(v, 1)
        if isinstance(v, (np.floating, np.integer)):
            return clean(v.item())
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    print(jsonsafe.dumps({k: clean(v) for k, v in record.items()}), flush=True)


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def environment() -> dict[str, Any]:
    import platform

    import transformers

    try:
        import sentence_transformers
        st_version = sentence_transformers.__version__
    except ImportError:  # pragma: no cover
        st_version = None
    info = {"torch": torch.__version__, "transformers": transformers.__version__,
            "sentence_transformers": st_version, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "device": "cpu"}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    return info


# --------------------------------------------------------------------------------------------- model / data

def model_path(name: Optional[str] = None) -> str:
    """The model folder: ``name`` resolved by tuner, default the bundled all-MiniLM-L6-v2."""
    from tuner.models._encoder import resolve_model

    return resolve_model(name or "all-MiniLM-L6-v2")


def stsb():
    from tuner.data import load_dataset

    return load_dataset("stsb")


def stsb_train_pairs(n: Optional[int] = None, seed: int = 0):
    """STS-B train pairs (scores normalised to 0..1) as ``tuner.engine._train.PairData``; a seeded random
    sample of ``n`` pairs when ``n`` is given (same sample for every caller with the same seed)."""
    from tuner.engine._train import pairs_from_frame

    ds = stsb()
    pairs = pairs_from_frame(ds.splits["train"], "sts", ds.score_range)
    if n is not None and n < len(pairs):
        keep = np.random.default_rng(seed).permutation(len(pairs))[:n]
        from tuner.engine._train import PairData

        pairs = PairData([pairs.text1[i] for i in keep], [pairs.text2[i] for i in keep], pairs.labels[keep])
    return pairs


def stsb_test_sentences() -> tuple[list[str], Any]:
    """Unique STS-B test sentences (first-seen order) and the test frame."""
    test = stsb().splits["test"]
    s1 = test["sentence1"].astype(str).tolist()
    s2 = test["sentence2"].astype(str).tolist()
    return list(dict.fromkeys(s1 + s2)), test


def load_st(path: str, device: str = "cpu", max_seq_length: int = 128):
    """A SentenceTransformer from ``path`` with ``max_seq_length`` set (same truncation as ours)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device=device)
    model.max_seq_length = max_seq_length
    return model


# --------------------------------------------------------------------------------------------- ST reference loop

def st_train_loop(model, pairs, batch_size: int, steps: int, *, lr: float = 2e-5, scale: float = 20.0,
                  seed: int = 0, warmup_ratio: float = 0.1, max_grad_norm: float = 1.0,
                  autocast_dtype: Optional[torch.dtype] = None, fused_adamw: bool = False) -> dict[str, Any]:
    """The reference: a plain PyTorch loop over a SentenceTransformer, as ST users write it.

    Per step: ``model.preprocess`` (tokenise, pad to the batch's longest) for each column, move to
    the device, ``CoSENTLoss(model, scale)`` (one forward per column), backward, gradient clipping,
    AdamW step, linear warmup/decay -- the same work per step as ``tuner.engine._train.finetune``.
    Batches are random (shuffled indices). ``fused_adamw``: AdamW(fused=True), what ST's own trainer
    (transformers' ``optim`` default with torch >= 2.8) uses; the plain loop uses torch's default.
    Returns wall seconds (ending with a device sync) and token counts.
    """
    from transformers import get_linear_schedule_with_warmup

    try:
        from sentence_transformers.sentence_transformer.losses import CoSENTLoss
    except ImportError:  # older ST
        from sentence_transformers.losses import CoSENTLoss

    device = model.device
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    labels_all = torch.from_numpy(np.asarray(pairs.labels, dtype=np.float32))
    real = padded = examples = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    loss_fn = CoSENTLoss(model, scale=scale)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01,
                                  **({"fused": True} if fused_adamw else {}))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * steps), steps)
    model.train()
    step = 0
    while step < steps:
        for i in range(0, len(order), batch_size):
            if step >= steps:
                break
            idx = order[i:i + batch_size]
            feats = []
            for texts in ([pairs.text1[j] for j in idx], [pairs.text2[j] for j in idx]):
                f = model.preprocess(texts)
                m = f["attention_mask"]  # still on the CPU: counting costs no device sync
                real += int(m.sum())
                padded += m.numel()
                feats.append({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in f.items()})
            labels = labels_all[idx].to(device)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = loss_fn(feats, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            examples += len(idx)
    sync(device)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()
    del optimizer, scheduler
    return {"wall_s": wall, "cpu_s": cpu, "pairs": examples, "real_tokens": real,
            "padded_tokens": padded, "final_loss": float(loss.detach())}


def batch_token_stats(pairs, tokenizer, batch_size: int, steps: int, max_seq_length: int, seed: int,
                      mode: str) -> dict[str, int]:
    """Real and padded token counts of the batches a loop sees.

    ``mode='st'``: random batches, each column padded to its own longest (ST's two forwards).
    ``mode='ours'``: ``tuner.engine._train`` length-grouped zigzag batches padded to the batch's longest.
    """
    from tuner.models._tokenize import tokenize
    from tuner.engine._train import length_grouped_batches

    ids1 = tokenize(tokenizer, pairs.text1, max_seq_length)
    ids2 = tokenize(tokenizer, pairs.text2, max_seq_length)
    l1 = np.array([len(x) for x in ids1])
    l2 = np.array([len(x) for x in ids2])
    real = padded = 0
    if mode == "st":
        order = np.random.default_rng(seed).permutation(len(pairs))
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)][:steps]
        for b in batches:
            real += int(l1[b].sum() + l2[b].sum())
            padded += len(b) * int(l1[b].max() + l2[b].max())
    else:
        rng = np.random.default_rng(seed)
        batches = length_grouped_batches(np.maximum(l1, l2), batch_size, rng)[:steps]
        for b in batches:
            real += int(l1[b].sum() + l2[b].sum())
            padded += 2 * len(b) * int(max(l1[b].max(), l2[b].max()))
    return {"real_tokens": real, "padded_tokens": padded}


# --------------------------------------------------------------------------------------------- timing

def sync(device: "torch.device | str | None" = None) -> None:
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize()


class Clock:
    """Wall and process CPU seconds of a block: ``with Clock() as c: ...; c.wall, c.cpu``.

    CPU seconds (``time.process_time``, all threads of this process) are the steadier measure on
    a machine shared with other jobs: waiting for a core does not count. With one intra-op thread
    they approximate the wall time the block would take on an idle core."""

    def __enter__(self) -> "Clock":
        sync()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        sync()
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def time_call(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    gc.collect()
    with Clock() as clock:
        out = fn()
    return clock.wall, clock.cpu, out


def interleaved(runs: dict[str, Callable[[], Any]], repeats: int,
                warmups: "dict[str, Callable[[], Any]] | None" = None, label: str = "") -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Warm up (``warmups``, untimed), then ``repeats`` rounds, each running every callable once;
    the order alternates between rounds so neither side always goes first.

    A callable may return a dict with ``wall_s`` and ``cpu_s`` (its own timing of the part that
    matters, e.g. excluding a model copy); otherwise the call is timed from outside. Returns
    ``(seconds, outputs)``, each ``{name: [per round]}``; every output dict gets ``wall_s`` and
    ``cpu_s`` (CPU seconds of this process, see :class:`Clock`).
    """
    names = list(runs)
    for name, fn in (warmups or {}).items():
        note(f"[{label}] warm-up {name}")
        fn()
    seconds: dict[str, list[float]] = {n: [] for n in names}
    outputs: dict[str, list[Any]] = {n: [] for n in names}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            wall, cpu, out = time_call(runs[name])
            if not isinstance(out, dict):
                out = {"value": out}
            out.setdefault("wall_s", wall)
            out.setdefault("cpu_s", cpu)
            seconds[name].append(out["wall_s"])
            outputs[name].append(out)
            note(f"[{label}] round {r + 1}/{repeats} {name}: {out['wall_s']:.2f}s wall, {out['cpu_s']:.2f}s cpu")
    return seconds, outputs


def median(values) -> float:
    return float(statistics.median(values))


def rates(outputs: list[dict], work: "float | str") -> dict[str, list[float]]:
    """Per-run work per wall second and per CPU second; ``work`` is a number or an output key."""
    amount = [o[work] if isinstance(work, str) else work for o in outputs]
    return {"wall": [a / o["wall_s"] for a, o in zip(amount, outputs)],
            "cpu": [a / o["cpu_s"] for a, o in zip(amount, outputs)]}


def ratio_fields(ours: dict[str, list[float]], ref: dict[str, list[float]], suffix: str = "") -> dict[str, Any]:
    """Ratios ours/ref of median rates (wall and CPU time) and the per-round paired ratios."""
    out: dict[str, Any] = {}
    for clock in ("wall", "cpu"):
        paired = [a / b for a, b in zip(ours[clock], ref[clock])]
        out[f"ratio_{clock}{suffix}"] = median(ours[clock]) / median(ref[clock])
        out[f"paired_ratios_{clock}{suffix}"] = paired
        out[f"median_paired_ratio_{clock}{suffix}"] = median(paired)
    return out


# --------------------------------------------------------------------------------------------- memory

def rss_now_mb() -> float:
    """Current resident set size (VmRSS) in MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_peak_mb() -> float:
    """Peak resident set size of this process (ru_maxrss; KiB on Linux) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def set_threads(threads: Optional[int]) -> None:
    if threads:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------- one small trial

class Phases:
    """Accumulates wall and CPU seconds per named phase: ``with phases("train"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str):
        import contextlib

        @contextlib.contextmanager
        def block():
            start, cpu = time.perf_counter(), time.process_time()
            try:
                yield
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
                self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
        return block()


def open_bench_storage(path: Path):
    """(optuna storage, how) -- tuner.storage's sqlite storage when that module exists, else optuna's RDBStorage."""
    url = f"sqlite:///{path}"
    try:
        from tuner.storage import open_storage

        return open_storage(url, heartbeat_interval=None, grace_period=None).storage, "tuner.storage.open_storage(sqlite)"
    except ImportError:
        import optuna

        return optuna.storages.RDBStorage(url), "optuna.storages.RDBStorage(sqlite)"


QUICK = {  # studies/sts-quick.toml: 256 STS-B train pairs, 200-pair dev/test, batch 16, lr 5e-5, 64 tokens
    "max_train_examples": 256, "max_eval_examples": 200, "batch_size": 16, "lr": 5e-5,
    "max_seq_length": 64, "epochs": 1, "eval_every": 8,
}
# a rotation of the loss weights / pooling a TPE study would try
CHOICES = [({"cosent": 1.0}, "avg"), ({"cosent": 0.5, "angle": 1.0}, "cls"), ({"ibn": 1.0, "cosent": 1.0}, "avg"),
           ({"angle": 1.0}, "cls"), ({}, "avg")]


class QuickTrialRunner:
    """Runs ``sts-quick``-like trials the way a worker does, timing each phase.

    Mirrors ``objectives.common.run_objective`` + ``tuner.engine._run.run_finetune``: data prepared
    once per worker (cached by its arguments), ``load_encoder`` (base weights cached per process),
    ``finetune`` with an ``on_eval`` hook scoring dev every ``eval_every`` steps and reporting to
    the study, then dev+test scoring, with the trial's storage calls (ask, user attrs, report,
    should_prune, tell) against an SQLite study.
    """

    def __init__(self, model: str = "all-MiniLM-L6-v2", storage_path: Optional[Path] = None,
                 quick: Optional[dict] = None, device: str = "cpu", malloc_trim: bool = False,
                 run_settings: Optional[dict] = None) -> None:
        self.malloc_trim = malloc_trim
        #: RunConfig fields every trial sets (e.g. pooling, prompt, lora_r for a decoder); pooling
        #: here replaces the rotation's
        self.run_settings = dict(run_settings or {})
        self.model = model_path(model)
        self.model_name = model
        self.quick = dict(QUICK, **(quick or {}))
        self.device = device
        self._data: dict = {}
        self.study = None
        if storage_path is not None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            storage, self.storage_kind = open_bench_storage(storage_path)
            self.study = optuna.create_study(study_name="bench", storage=storage, direction="maximize",
                                             pruner=optuna.pruners.MedianPruner(n_startup_trials=100),
                                             load_if_exists=True)

    def prepared(self, seed: int):
        from tuner.config import RunConfig
        from tuner.engine._run import prepare_data

        q = self.quick
        key = (q["max_train_examples"], q["max_eval_examples"], q["batch_size"])
        if key not in self._data:
            self._data[key] = prepare_data(RunConfig(train=["stsb"], task="sts", protocol="standard", seed=42,
                                                     max_train_examples=q["max_train_examples"],
                                                     max_eval_examples=q["max_eval_examples"],
                                                     batch_size=q["batch_size"]))
        return self._data[key]

    def run(self, number: int, identical: bool = False) -> dict[str, Any]:
        """Trial ``number``: loss weights/pooling rotate through ``CHOICES`` and the seed is
        42 + number, unless ``identical`` (every trial the first choice, seed 42)."""
        from tuner.engine._run import score_eval_sets
        from tuner.models._encoder import load_encoder
        from tuner.models._tokenize import tokenize
        from tuner.config import RunConfig
        from tuner.engine._train import finetune

        q = self.quick
        weights, pooling = CHOICES[0 if identical else number % len(CHOICES)]
        pooling = self.run_settings.get("pooling", pooling)
        seed = 42 if identical else 42 + number
        phases = Phases()
        trial = None
        start, cpu_start = time.perf_counter(), time.process_time()
        if self.study is not None:
            with phases("storage"):
                trial = self.study.ask()
                for key, value in {"model": self.model_name, "weights": weights, "pooling": pooling,
                                   "train_datasets": ["stsb"], "eval_datasets": ["stsb"], "task": "sts",
                                   "metric": "spearman", "protocol": "standard", "device": self.device,
                                   "versions": {"torch": torch.__version__}, "worker": "bench"}.items():
                    trial.set_user_attr(key, value)
        with phases("data"):
            data = self.prepared(seed=number)
        with phases("model_load"):
            encoder = load_encoder(self.model, pooling=pooling, device=self.device,
                                   prompt=self.run_settings.get("prompt"))
        with phases("tokenize"):
            # what finetune/encode would tokenise first; cached across trials by tokenizer + length
            tokenize(encoder.tokenizer, data.train.text1, q["max_seq_length"])
            tokenize(encoder.tokenizer, data.train.text2, q["max_seq_length"])
            for _, parts in data.eval:
                for split in ("dev", "test"):
                    f = parts[split]
                    texts = list(dict.fromkeys(f["sentence1"].astype(str).tolist() + f["sentence2"].astype(str).tolist()))
                    tokenize(encoder.tokenizer, texts, q["max_seq_length"])
        config = RunConfig(weights=dict(weights), pooling=pooling, lr=q["lr"], epochs=q["epochs"],
                           batch_size=q["batch_size"], max_seq_length=q["max_seq_length"], seed=seed,
                           eval_every=q["eval_every"], **{k: v for k, v in self.run_settings.items() if k != "pooling"})

        def on_eval(step: int) -> None:
            with phases("eval"):
                dev, _ = score_eval_sets(encoder, data, ("dev",), max_seq_length=config.max_seq_length, seed=config.seed)
            if trial is not None:
                with phases("storage"):
                    trial.report(float(np.mean(list(dev["dev"].values()))), step)
                    trial.should_prune()

        before = {k: (phases.seconds.get(k, 0.0), phases.cpu.get(k, 0.0)) for k in ("eval", "storage")}
        with Clock() as fit:
            result = finetune(encoder, data.train, config, on_eval=on_eval, progress=False)
        # the hook's dev scoring and storage calls happen inside finetune: not training
        phases.seconds["train"] = fit.wall - sum(phases.seconds.get(k, 0.0) - w for k, (w, _) in before.items())
        phases.cpu["train"] = fit.cpu - sum(phases.cpu.get(k, 0.0) - c for k, (_, c) in before.items())
        with phases("eval"):
            scores, _ = score_eval_sets(encoder, data, ("dev", "test"), max_seq_length=config.max_seq_length,
                                        seed=config.seed)
        if trial is not None:
            with phases("storage"):
                for split, per in scores.items():
                    for name, value in per.items():
                        trial.set_user_attr(f"scores.{split}.{name}", float(value))
                trial.set_user_attr("train_pairs_per_s", round(result.pairs_per_s, 2))
                trial.set_user_attr("wall_s", round(time.perf_counter() - start, 3))
                self.study.tell(trial, float(np.mean(list(scores["dev"].values()))))
        with phases("cleanup"):
            del encoder
            gc.collect()
            if self.malloc_trim:
                malloc_trim()
        total, total_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        s, c = phases.seconds, phases.cpu
        overhead = total - s.get("train", 0.0) - s.get("eval", 0.0)
        overhead_cpu = total_cpu - c.get("train", 0.0) - c.get("eval", 0.0)
        return {"trial": number, "total_s": total, **{f"{k}_s": v for k, v in sorted(s.items())},
                "overhead_s": overhead, "overhead_pct": 100.0 * overhead / total,
                "total_cpu_s": total_cpu, **{f"{k}_cpu_s": v for k, v in sorted(c.items())},
                "overhead_cpu_s": overhead_cpu, "overhead_pct_cpu": 100.0 * overhead_cpu / total_cpu,
                "dev_spearman": float(np.mean(list(scores["dev"].values()))), "steps": result.steps,
                "weights": weights, "pooling": pooling}
