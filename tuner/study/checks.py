"""Validation helpers for study files: every problem is one line naming the file and the key."""
from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any, Optional

from tuner.errors import TunerError
from tuner.models._pooling import parse_pooling


def label_of(path: Optional[Path]) -> str:
    if path is None:
        return "<study>"
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class Checker:
    def __init__(self, path: Optional[Path]) -> None:
        self.path = path
        self.label = label_of(path)
        self.base = path.resolve().parent if path is not None else Path.cwd()

    def fail(self, key: str, problem: str) -> TunerError:
        return TunerError(f"{self.label}: key '{key}': {problem}")

    def table(self, raw: dict, key: str, allowed: tuple[str, ...]) -> dict:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table ([{key}]), got {type(value).__name__}")
        self.known(value, allowed, key + ".")
        return value

    def known(self, table: dict, allowed: tuple[str, ...], prefix: str = "") -> None:
        for k in table:
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1)
                hint = f"did you mean '{prefix}{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
                raise self.fail(prefix + k, f"unknown key; {hint}")

    def string(self, value: Any, key: str, choices: Optional[tuple[str, ...]] = None) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {show(value)}")
        text = value.strip()
        if choices is not None and text.lower() not in choices:
            raise self.fail(key, f"'{value}' is not one of {', '.join(choices)}")
        return text.lower() if choices is not None else text

    def integer(self, value: Any, key: str, minimum: Optional[int]) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {show(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"is {value}; use {minimum} or more")
        return value

    def number(self, value: Any, key: str, *, positive: bool = False, minimum: Optional[float] = None,
               below: Optional[float] = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number, got {show(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise self.fail(key, f"is {value}; use a finite number")
        if positive and number <= 0:
            raise self.fail(key, f"is {value}; it must be > 0")
        if minimum is not None and number < minimum:
            raise self.fail(key, f"is {value}; it must be >= {minimum:g}")
        if below is not None and number >= below:
            raise self.fail(key, f"is {value}; it must be < {below:g}")
        return number

    def string_list(self, value: Any, key: str, allow_str: bool = True) -> list[str]:
        if isinstance(value, str) and allow_str:
            value = [value]
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list of strings, got {show(value)}")
        if not value:
            raise self.fail(key, "is empty; list at least one entry")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{key}[{i}]", f"must be a non-empty string, got {show(item)}")
            out.append(item.strip())
        if len(set(out)) != len(out):
            dup = next(x for x in out if out.count(x) > 1)
            raise self.fail(key, f"lists '{dup}' twice; remove the duplicate")
        return out

    def local_path(self, text: str) -> Optional[Path]:
        """A relative/absolute path given in the file, resolved against the file's folder."""
        p = Path(text).expanduser()
        if not p.is_absolute():
            p = self.base / p
        return p


def show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return f"{text[:60]} ({type(value).__name__})"


def pooling_value(check: Checker, value: Any, key: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise check.fail(key, f"must be a pooling name or token index, got {show(value)}")
    try:
        return parse_pooling(value)
    except TunerError as exc:
        raise check.fail(key, str(exc)) from None


