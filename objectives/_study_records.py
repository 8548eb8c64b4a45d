"""What a study records once, whichever worker gets there first: the zero-shot scores and per-item
outputs of each model, the STS gold scores, and per eval set its train/test overlap and the scored
rows against the full files (docs/trial-record.md, "Study attributes").
"""
from __future__ import annotations

import gc
import logging
from typing import Any

from tuner.config import RunConfig

_log = logging.getLogger(__name__)


def zero_shot_key(model: str, dataset: str, split: str) -> str:
    return f"zero_shot.{model}.{dataset}.{split}"


def ensure_zero_shot(ctx: Any, study: Any, model: str, config: RunConfig, data: Any) -> None:
    """Record the "without fine-tuning" score of ``model`` on every eval set, once per study
    (``ctx``: the worker's :class:`objectives.common.WorkerContext`).

    The first worker that needs a (model, datasets) pair computes it under a storage-wide lock;
    the others find it recorded.
    """
    from tuner.engine._run import score_eval_sets
    from tuner.exporter.items import gold_key, overlap_key, zero_shot_items_key
    from tuner.models._encoder import load_encoder

    known = study.user_attrs  # one storage read: ``study.user_attrs`` reads the storage on each access
    _record_eval_rows(study, known, config, data)
    splits = ("dev", "test")
    names = [ds.name for ds, _ in data.eval]
    scored = [(ds, s) for ds, parts in data.eval for s in splits if s in parts]  # nli-transfer: dev of STS-B only
    wanted = [key(model, ds.name, s) for ds, s in scored for key in (zero_shot_key, zero_shot_items_key)]
    wanted += [overlap_key(n) for n in names]
    wanted += [gold_key(ds.name, s) for ds, s in scored if ds.task == "sts"]
    if all(k in known for k in wanted):
        return
    spec = ctx.spec
    with ctx.handle.lock(f"zero_shot:{ctx.study_name}:{model}:{','.join(names)}", timeout=3600):
        attrs = study.user_attrs
        if all(k in attrs for k in wanted):
            return
        encoder = load_encoder(config.model, pooling=spec.zero_shot_pooling(), device=ctx.device,
                               prompt=spec.zero_shot_prompt())
        scores, details = score_eval_sets(encoder, data, splits, max_seq_length=config.max_seq_length,
                                          seed=config.seed)
        for split in splits:
            for name, value in scores[split].items():
                key = zero_shot_key(model, name, split)
                if key not in attrs:
                    study.set_user_attr(key, float(value))
        _record_study_items(study, attrs, model, details)
        _record_overlap(study, attrs, config, data)
        del encoder
        gc.collect()


def _record_study_items(study: Any, attrs: dict, model: str, details: dict) -> None:
    """Once per study: zero-shot per-item outputs and the STS gold scores (docs/trial-record.md)."""
    from tuner.exporter.items import encode_items, gold_key, item_values, zero_shot_items_key

    for split, per_dataset in details.items():
        for name, result in per_dataset.items():
            found = item_values(result)
            wanted = {zero_shot_items_key(model, name, split): found}
            if "gold" in result:
                wanted[gold_key(name, split)] = ("gold", result["gold"])
            for key, kind_values in wanted.items():
                if kind_values is None or key in attrs:
                    continue
                try:
                    record = encode_items(kind_values[1], kind_values[0])
                except ValueError as exc:  # over the attr size limit: the export falls back, never the run
                    _log.warning("not recorded: %s: %s", key, exc)
                    record = {"error": str(exc)}   # present, so later trials do not redo the zero-shot pass
                study.set_user_attr(key, record)


def _record_overlap(study: Any, attrs: dict, config: RunConfig, data: Any) -> None:
    """Once per study and dataset: how much of the scored dev/test rows the protocol's train split holds."""
    from tuner.data import protocol_splits
    from tuner.data.overlap import splits_overlap
    from tuner.engine._run import SPLIT_SEED
    from tuner.exporter.items import overlap_key

    for ds, parts in data.eval:
        key = overlap_key(ds.name)
        if key in attrs:
            continue
        try:
            train = protocol_splits(ds, config.protocol, seed=SPLIT_SEED)["train"]
            held = {k: v for k, v in parts.items() if k in ("dev", "test")}
            report = splits_overlap({"train": train, **held}, ds.task)
        except Exception as exc:  # noqa: BLE001 - a report, never a reason to fail the trial
            _log.warning("overlap of %s not measured: %s", ds.name, exc)
            report = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        study.set_user_attr(key, {"dataset": ds.name, "task": ds.task, "protocol": config.protocol,
                                  "seed": SPLIT_SEED, "train_rows": "the protocol's whole train split "
                                  "(a run trains on a sample of it); dev/test: the rows the trials score",
                                  **report})


def _record_eval_rows(study: Any, attrs: dict, config: RunConfig, data: Any) -> None:
    """Once per study and dataset: the dev/test rows the trials score against the full files, with a
    model-free figure on both (a sample's representativeness; :mod:`tuner.data.sampling`)."""
    from tuner.data import protocol_splits
    from tuner.data.sampling import representativeness
    from tuner.engine._run import SPLIT_SEED
    from tuner.exporter.items import eval_rows_key

    for ds, parts in data.eval:
        key = eval_rows_key(ds.name)
        if key in attrs or ds.task == "retrieval":  # retrieval samples whole queries (tuner.data.beir)
            continue
        try:
            full = protocol_splits(ds, config.protocol, seed=SPLIT_SEED)
            report = {split: representativeness(parts[split], full[split])
                      for split in ("dev", "test") if split in parts and len(parts[split])}
        except Exception as exc:  # noqa: BLE001 - a report, never a reason to fail the trial
            _log.warning("scored rows of %s not measured: %s", ds.name, exc)
            report = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        study.set_user_attr(key, {"dataset": ds.name, "max_eval_examples": config.max_eval_examples, **report})
