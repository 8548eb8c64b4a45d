"""Showing a :class:`tuner.service._progress.Snapshot`: the one-line text, and the live line of ``optimize``.

:func:`format_line` is the text (``12/40 trials | best spearman 0.8123 (#7) | 14m05s elapsed | ETA
~32m (2 workers) | #12 step 40 dev 0.8012``). :class:`LiveProgress` polls the storage from a
thread while the worker processes run: on a terminal it redraws the line in place (``\\r``) every
second; otherwise it writes a plain line through ``log`` when a trial finishes, and at most every
``every_s`` seconds in between, so logs get no ``\\r`` spam. No torch.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import threading
import time
from typing import Any, Callable, Optional

from tuner.service._progress import Snapshot

CLEAR = "\r\x1b[K"          # back to column 0 and erase the line
NO_ETA = "ETA ? (no trial has finished or reported a training step yet)"
TTY_ENV = "TUNER_PROGRESS_TTY"  # "1" in the workers' environment while a live line is drawn: their
#                                 trial lines erase it first (tuner.service._orchestrate.run_worker)


def format_duration(seconds: Optional[float]) -> str:
    """``45s``, ``4m03s``, ``1h02m``, ``2d03h``; ``?`` for None."""
    if seconds is None:
        return "?"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def describe_steps(train_step: Optional[int], train_steps: Optional[int], run: int, runs: int,
                   step: Optional[int], dev: Optional[float]) -> str:
    """`` step 40/1400 seed 2/3 dev 0.8012 (step 30)`` for a running trial (empty when nothing is known)."""
    if train_step is not None:
        text = f" step {train_step}/{train_steps}" + (f" seed {run}/{runs}" if runs > 1 else "")
        return text + (f" dev {dev:.4f} (step {step})" if dev is not None else "")
    if step is not None:
        return f" step {step}" + (f" dev {dev:.4f}" if dev is not None else "")
    return ""


def format_line(snap: Snapshot, metric: str = "value", unit: str = "trials", max_running: int = 3) -> str:
    """The progress line (see the module doc)."""
    parts = [f"{snap.done}/{snap.target} {unit}"]
    parts.append(f"best {metric} {snap.best:.4f} (#{snap.best_trial})" if snap.best is not None else "best -")
    parts.append(f"{format_duration(snap.elapsed_s)} elapsed")
    if snap.done >= snap.target and snap.running == 0:
        parts.append("done")
    else:
        eta = f"ETA ~{format_duration(snap.eta_s)}" if snap.eta_s is not None else NO_ETA
        parts.append(f"{eta} ({snap.workers} worker{'s' if snap.workers != 1 else ''})")
    running = []
    for r in snap.in_flight[:max_running]:
        running.append(f"#{r.number} {format_duration(r.age_s)}" + describe_steps(
            r.train_step, r.train_steps, r.run, r.runs, r.step, r.dev))
    if running:
        more = f" +{len(snap.in_flight) - max_running}" if len(snap.in_flight) > max_running else ""
        parts.append("running " + ", ".join(running) + more)
    return " | ".join(parts)


def advance(snap: Snapshot, seconds: float) -> Snapshot:
    """``snap`` as it reads ``seconds`` later without a new look at the storage (the terminal line
    ticks every second; the storage is read every few)."""
    if seconds <= 0:
        return snap
    eta = None if snap.eta_s is None else max(0.0, snap.eta_s - seconds)
    running = [dataclasses.replace(r, age_s=None if r.age_s is None else r.age_s + seconds) for r in snap.in_flight]
    return dataclasses.replace(snap, elapsed_s=snap.elapsed_s + seconds, eta_s=eta, in_flight=running)


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty()) and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False


class LiveProgress:
    """Poll ``fetch()`` (a :class:`Snapshot`, read from the storage) in a thread and show it.

    ``tty``: redraw in place on ``stream`` (default: whether ``stream`` is a terminal); else
    plain lines through ``log``. ``poll_s``: seconds between storage reads (default 3 on a
    terminal, 5 otherwise). ``every_s``: a plain line at least this far apart unless a trial
    finished (default ``$TUNER_PROGRESS_INTERVAL`` or 60). ``on_stop``: called by :meth:`stop`
    after the thread ended (closes the storage connection ``fetch`` opened)."""

    def __init__(self, fetch: Callable[[], Snapshot], *, log: Callable[[str], None], metric: str = "value",
                 unit: str = "trials", stream: Any = None, tty: Optional[bool] = None,
                 poll_s: Optional[float] = None, every_s: Optional[float] = None,
                 on_stop: Optional[Callable[[], Any]] = None) -> None:
        self.fetch = fetch
        self.on_stop = on_stop
        self.stream = stream if stream is not None else sys.stderr
        self.tty = is_terminal(self.stream) if tty is None else tty
        self.metric, self.unit = metric, unit
        self._log = log
        self.poll_s = float(poll_s if poll_s is not None else (3 if self.tty else 5))
        env = os.environ.get("TUNER_PROGRESS_INTERVAL", "").strip()
        self.every_s = float(every_s if every_s is not None else (int(env) if env.isdigit() and int(env) > 0 else 60))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._drawn = False
        self._printed_done: Optional[int] = None
        self.last: Optional[Snapshot] = None
        self.lines: list[str] = []   # the plain lines written (tests read them)

    # -------------------------------------------------------------- output
    def log(self, message: str) -> None:
        """A log line that does not collide with the live line (use it while the line is shown)."""
        with self._lock:
            if self._drawn:
                self.stream.write(CLEAR)
                self._drawn = False
            self._log(message)

    def _draw(self, snap: Snapshot) -> None:
        width = max(20, shutil.get_terminal_size((120, 20)).columns - 1)
        with self._lock:
            self.stream.write(CLEAR + format_line(snap, self.metric, self.unit)[:width])
            self.stream.flush()
            self._drawn = True

    def _plain(self, snap: Snapshot) -> None:
        self._printed_done = snap.done
        line = "progress: " + format_line(snap, self.metric, self.unit)
        self.lines.append(line)
        self._log(line)

    # -------------------------------------------------------------- thread
    def _read(self) -> Optional[Snapshot]:
        try:
            return self.fetch()
        except Exception:  # noqa: BLE001 - a storage hiccup must not stop the study; try again later
            return None

    def _run(self) -> None:
        last_read = last_print = 0.0
        base: Optional[Snapshot] = None
        base_at = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if base is None or now - last_read >= self.poll_s:
                last_read = now
                snap = self._read()
                if snap is not None:
                    base, base_at = snap, now
                    self.last = snap
            if base is not None:
                if self.tty:
                    self._draw(advance(base, time.monotonic() - base_at))
                elif base.done != self._printed_done or now - last_print >= self.every_s:
                    self._plain(advance(base, time.monotonic() - base_at))
                    last_print = now
            self._stop.wait(1.0 if self.tty else min(self.poll_s, self.every_s))

    def start(self) -> "LiveProgress":
        self._thread = threading.Thread(target=self._run, name="tuner-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if not self.tty and self._printed_done is not None:  # the last trials' line, if not shown yet
                snap = self._read()
                if snap is not None and snap.done != self._printed_done:
                    self._plain(snap)
        if self.on_stop is not None:
            try:
                self.on_stop()
            except Exception:  # noqa: BLE001 - closing the progress line's own connection
                pass
        with self._lock:
            if self._drawn:
                self.stream.write(CLEAR)
                self.stream.flush()
                self._drawn = False
