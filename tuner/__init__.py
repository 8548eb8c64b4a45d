"""tuner: Optuna hyperparameter optimisation for fine-tuning sentence-embedding models.

Public API (the CLI, ``python -m tuner``, is a thin layer over it)::

    tuner.evaluate(model, datasets, pooling=None, split="test")        -> pandas.DataFrame
    tuner.finetune(model, train, eval=None, weights=..., taus=..., pooling=..., **budget)
                                                                       -> FinetuneOutcome
    tuner.optimize(study, storage=None, workers=1, n_trials=None)      -> optuna.Study
    tuner.export(study, out, storage=None, split="test")               -> ExportResult
    tuner.plot_matrix(matrix, labels, out)                             -> list of plot paths
    tuner.load_encoder(model, pooling=None)                            -> Encoder
    tuner.load_dataset(spec)                                           -> Dataset
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "TunerError",
    "evaluate",
    "finetune",
    "optimize",
    "export",
    "plot_matrix",
    "load_encoder",
    "load_dataset",
    "parse_spec",
    "load_spec",
    "__version__",
]

from tuner.errors import TunerError

_LAZY = {
    "evaluate": "tuner.api", "finetune": "tuner.api", "optimize": "tuner.api", "export": "tuner.api",
    "plot_matrix": "tuner.api", "load_encoder": "tuner.models", "load_dataset": "tuner.data",
    "parse_spec": "tuner.study", "load_spec": "tuner.study",
}


def __getattr__(name: str) -> Any:
    # Lazy: `import tuner` stays fast (torch/transformers load on first use).
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tuner' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
