"""tuner: Optuna hyperparameter optimisation for fine-tuning sentence-embedding models.

Public API (the CLI, ``python -m tuner``, is a thin layer over it)::

    tuner.evaluate(model, datasets, pooling=None, split="test")        -> pandas.DataFrame
    tuner.finetune(model, train, eval=None, *, weights=None, taus=None, output=None, device=None,
                   config=None, **settings)  (settings: any RunConfig field) -> FinetuneOutcome
    tuner.optimize(study, storage=None, workers=1, n_trials=None)      -> optuna.Study
    tuner.status(study, storage=None, study_name=None)                 -> dict
    tuner.export(study, out, storage=None, split="test")               -> ExportResult
    tuner.plot_matrix(matrix, labels, out)                             -> list of plot paths
    tuner.load_encoder(model, pooling=None)                            -> Encoder
    tuner.load_dataset(spec)                                           -> Dataset
    tuner.RunConfig(...), tuner.load_run_config(json_path)             -> RunConfig (one run)
"""
from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "TunerError",
    "evaluate",
    "finetune",
    "optimize",
    "status",
    "export",
    "plot_matrix",
    "load_encoder",
    "load_dataset",
    "parse_spec",
    "load_spec",
    "RunConfig",
    "load_run_config",
    "__version__",
]

from tuner.errors import TunerError

_LAZY = {
    "evaluate": "tuner.api", "finetune": "tuner.api", "optimize": "tuner.api", "status": "tuner.api",
    "export": "tuner.api", "load_run_config": "tuner.api", "RunConfig": "tuner.config",
    "plot_matrix": "tuner.api", "load_encoder": "tuner.models", "load_dataset": "tuner.data",
    "parse_spec": "tuner.study", "load_spec": "tuner.study",
}


class _Package(types.ModuleType):
    """``tuner`` itself. The API function ``tuner.evaluate`` shares its name with the submodule
    ``tuner/evaluate.py``; importing that submodule would make the import system overwrite
    ``tuner.evaluate`` with the module. The API names keep their functions (the submodule stays
    importable: ``from tuner.evaluate import encode``, ``sys.modules["tuner.evaluate"]``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
