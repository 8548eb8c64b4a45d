"""Quiet model loading: transformers' logging and progress bars off while tuner loads a model.

Users of tuner see one progress line per trial; transformers' LOAD REPORT tables and download bars
would drown it. ``tuner --verbose`` (or ``TUNER_VERBOSE=1``) lets them through.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from typing import Iterator


def env_true(value: "str | None") -> bool:
    """An environment variable's value read as a switch (``1``, ``true``, ``yes``, ``on``)."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def library_chatter_wanted() -> bool:
    """True under ``tuner --verbose`` (root logger at INFO or lower) or ``TUNER_VERBOSE=1``."""
    return env_true(os.environ.get("TUNER_VERBOSE")) or logging.getLogger().isEnabledFor(logging.INFO)


# tqdm.auto (imported by transformers) warns "IProgress not found" in a Jupyter kernel without
# ipywidgets, then falls back to the plain bar: noise for tuner's users, who see no bar anyway.
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")

_QUIET_LOCK = threading.Lock()
_QUIET_DEPTH = 0
_QUIET_SAVED: "tuple[int, bool] | None" = None


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence transformers' logging (e.g. its LOAD REPORT tables) and progress bars inside the block.

    The previous verbosity is restored when the outermost block exits (nesting- and thread-safe),
    so a program that uses tuner as a library keeps its own transformers settings. Under
    :func:`library_chatter_wanted` nothing is changed.
    """
    global _QUIET_DEPTH, _QUIET_SAVED
    if library_chatter_wanted():
        yield
        return
    from transformers.utils import logging as hf_logging

    with _QUIET_LOCK:
        if _QUIET_DEPTH == 0:
            _QUIET_SAVED = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        _QUIET_DEPTH += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET_DEPTH -= 1
            if _QUIET_DEPTH == 0 and _QUIET_SAVED is not None:
                verbosity, bars = _QUIET_SAVED
                hf_logging.set_verbosity(verbosity)
                if bars:
                    hf_logging.enable_progress_bar()
                _QUIET_SAVED = None
