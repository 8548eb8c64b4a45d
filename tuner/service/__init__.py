"""The study service: run a study with N workers on one storage, exactly once per grid cell.

Modules::

    _orchestrate.py    ``optimize``: check inputs, create the study, start workers, wait, report
    _workers.py        worker processes: one per GPU, or CPU cores split between them
    _study_service.py  create/load a study, queue grid cells, the worker loop (under one lock)
    _trial_runtime.py  around each trial: the signal guard and the heartbeat thread
    _tracking.py       MLflow tracking (--mlflow): a parent run per study, a child run per trial
    _warm_start.py     the best trials of one study as the first trials of another
    _artifacts.py      trial artifacts the dashboard shows (loss curve, config)
    _study_progress.py each grid cell's state and the study's progress, from its trials
    _progress.py       how far a study is and how long it will take (ETA)
    _progress_view.py  the one-line progress text and the live line of ``optimize``
    _status.py         ``tuner status``: counts, grid coverage, best trial, running trials
"""
from tuner._lazy import lazy_exports

__all__ = ["StudyService", "format_status", "read_status", "run_study", "run_worker"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "StudyService": "tuner.service._study_service",
    "run_study": "tuner.service._orchestrate", "run_worker": "tuner.service._orchestrate",
    "format_status": "tuner.service._status", "read_status": "tuner.service._status",
})
