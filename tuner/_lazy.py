"""Lazy re-exports for packages whose modules import torch, transformers or optuna.

``import tuner`` (and ``tuner.models``, ``tuner.engine``, ``tuner.service``) must not import torch:
the CLI's ``--help`` and torch-free commands (``studies``, ``status``, ``splits``) stay fast. Such a
package names its public names here and the module that defines each; the module is imported on
first attribute access (PEP 562), and the value is cached on the package.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps each public name to its module."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
