"""A search space that fits the training data's shape: ``losses = "any"`` over unscored
(anchor, positive) pairs draws only the losses that can train on them (docs/data.md)."""
from __future__ import annotations

from dataclasses import replace

from tuner.data.shapes import PAIRS, file_shape
from tuner.losses.registry import LOSSES, SHAPES, combo_key, losses_for_shape
from tuner.study.space import LossChoice
from tuner.study.spec import StudySpec


def restrict_to_shape(spec: StudySpec) -> None:
    """``losses = "any"`` over (anchor, positive) pairs: only the losses that train on them are drawn.

    Pair losses need a score or a negative; unscored pairs (without mining) leave in-batch negatives.
    The restriction is a note the study prints once when it starts (``spec.notes``)."""
    choice = spec.search.losses
    if choice.mode != "any":
        return
    shapes = {file_shape(spec.dataset_sources[t], spec.base.columns or None) for t in spec.train_datasets
              if t in spec.dataset_sources}
    drawn = spec.search.params.get("mine_num_negatives")
    may_be_plain = (drawn.value == 0 if drawn.kind == "fixed" else 0 in drawn.choices if drawn.kind == "categorical"
                    else drawn.low <= 0) if drawn is not None else not spec.base.mine_num_negatives
    mined = not may_be_plain
    if shapes != {PAIRS} or mined:
        return
    able = tuple(losses_for_shape(PAIRS))
    if not able or len(able) == len(LOSSES):
        return
    left = [n for n in LOSSES if n not in able]
    spec.search = replace(spec.search, losses=LossChoice("any", names=able) if len(able) > 1 else
                          LossChoice("fixed", (combo_key(able),)))
    spec.notes.append(f"[data] train holds {SHAPES[PAIRS]}: losses = \"any\" draws {', '.join(able)} only "
                      f"({', '.join(left)} need a score or a negative; mine hard negatives with mine_num_negatives "
                      "to train them)")
