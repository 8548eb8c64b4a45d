"""One run: the fine-tuning loop, fine-tune-and-score, and memory between runs.

Modules::

    _train.py   the training loop (plain PyTorch, readable top to bottom) and its batch layouts
    _train_data.py  what the loop trains on: scored pairs, triplets (one or more negatives), NLI's two views
    _prepare.py the training data in its shape and every eval set's dev/test rows
    _mining.py  hard-negative mining of (anchor, positive) pairs with the base model, cached per setting
    _run.py     load data -> protocol splits -> load encoder -> fine-tune -> score dev and test -> save
    _memory.py  giving freed heap memory back to the OS between trials

The names below load torch on first use, not on ``import tuner.engine``.
"""
from tuner._lazy import lazy_exports

__all__ = ["FinetuneOutcome", "TrainResult", "evaluate_model", "finetune", "prepare_data", "release_memory",
           "run_finetune", "score_eval_sets"]

__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["FinetuneOutcome", "evaluate_model", "prepare_data", "run_finetune", "score_eval_sets"],
                    "tuner.engine._run"),
    **dict.fromkeys(["TrainResult", "finetune"], "tuner.engine._train"),
    "release_memory": "tuner.engine._memory",
})
