"""What a worker runs around each trial: a signal guard and a heartbeat thread.

- :class:`SignalGuard`: SIGINT/SIGTERM become one ``KeyboardInterrupt``, raised only while a trial
  trains; elsewhere the worker loop stops at its next safe point (no storage write cut in half).
- :class:`Heartbeat`: records the running trial's heartbeat every ``interval`` seconds in a daemon
  thread, so that a worker that dies stops beating and its trial is failed after the grace period.

Used by :class:`tuner.service._study_service.StudyService`.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Optional

_log = logging.getLogger("tuner.service._study_service")  # the name these messages have always been logged under


class SignalGuard:
    """Turn SIGINT/SIGTERM into one KeyboardInterrupt, raised only while a trial trains.

    Outside training (scanning, popping, telling) the signal only sets ``requested`` and the loop
    stops at the next safe point, so no storage write is cut in half. Further signals are ignored.
    """

    def __init__(self) -> None:
        self.requested: Optional[str] = None
        self.interruptible = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            return
        self.requested = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name
        if self.interruptible:
            raise KeyboardInterrupt(self.requested)


class Heartbeat:
    """``storage.record_heartbeat(trial_id)`` every ``interval`` seconds until :meth:`stop`
    (nothing when ``interval`` is falsy)."""

    def __init__(self, storage: Any, trial_id: int, interval: Optional[int]) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Heartbeat":
        if self.interval:
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.trial_id}", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.storage.record_heartbeat(self.trial_id)
                except Exception as exc:  # noqa: BLE001 - keep beating; the trial itself reports errors
                    _log.warning("heartbeat for trial id %s failed: %s", self.trial_id, exc)
        finally:
            try:
                self.storage.remove_session()
            except Exception:  # noqa: BLE001
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
