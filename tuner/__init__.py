"""tuner: Optuna hyperparameter optimisation for fine-tuning sentence-embedding models.

Public API (the CLI, ``python -m tuner``, is a thin layer over it)::

    tuner.evaluate(model, datasets, pooling=None, split="test")        -> pandas.DataFrame
    tuner.finetune(model, train, eval=None, *, weights=None, taus=None, output=None, device=None,
                   config=None, **settings)  (settings: any RunConfig field) -> FinetuneOutcome
    tuner.optimize(study, storage=None, workers=1, n_trials=None)      -> optuna.Study
    tuner.status(study, storage=None, study_name=None)                 -> dict
    tuner.mine(model, train, out=None, *, num_negatives=1, range_min=0, range_max=None, margin=None,
               ...)  (hard negatives for (anchor, positive) pairs, cached) -> Mined
    tuner.export(study, out, storage=None, split="test")               -> ExportResult
    tuner.confirm(study, storage=None, *, top, seeds, budget=None)     -> dict (the confirmation report)
    tuner.plot_matrix(matrix, labels, out)                             -> list of plot paths
    tuner.load_encoder(model, pooling=None)                            -> Encoder
    tuner.load_dataset(spec)                                           -> Dataset
    tuner.RunConfig(...), tuner.load_run_config(json_path)             -> RunConfig (one run)
"""
from __future__ import annotations

from tuner._lazy import lazy_exports
from tuner.errors import TunerError

__version__ = "0.1.0"

__all__ = [
    "TunerError",
    "evaluate",
    "finetune",
    "mine",
    "optimize",
    "status",
    "export",
    "confirm",
    "plot_matrix",
    "load_encoder",
    "load_dataset",
    "parse_spec",
    "load_spec",
    "RunConfig",
    "load_run_config",
    "__version__",
]

# Lazy: `import tuner` stays fast (torch/transformers load on first use).
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["evaluate", "finetune", "mine", "optimize", "status", "export", "confirm", "plot_matrix",
                     "load_run_config"],
                    "tuner.api"),
    "RunConfig": "tuner.config", "load_encoder": "tuner.models", "load_dataset": "tuner.data",
    "parse_spec": "tuner.study", "load_spec": "tuner.study",
})
