"""tuner.service._progress (done/total, best, elapsed, ETA from synthetic FrozenTrials) and tuner.service._progress_view
(the line, the live display on a terminal and in a log), and the same numbers in ``status``."""
from __future__ import annotations

import datetime as dt
import io
import time

import optuna
import pytest

from tuner.service._progress import Snapshot, estimate_eta, summarize, trial_seconds
from tuner.service._progress_view import CLEAR, LiveProgress, advance, format_duration, format_line
from tuner.service._status import format_status

TS = optuna.trial.TrialState
NOW = dt.datetime(2025, 1, 1, 12, 0, 0)


def trial(number, state, start_ago=None, seconds=None, value=None, steps=None, worker=None):
    start = NOW - dt.timedelta(seconds=start_ago) if start_ago is not None else None
    complete = start + dt.timedelta(seconds=seconds) if (start is not None and seconds is not None) else None
    return optuna.trial.FrozenTrial(
        number=number, state=state, value=value, datetime_start=start, datetime_complete=complete, params={},
        distributions={}, user_attrs={"worker": worker} if worker else {}, system_attrs={},
        intermediate_values=dict(steps or {}), trial_id=number)


def study_trials():
    return [
        trial(0, TS.COMPLETE, start_ago=600, seconds=100, value=0.70),
        trial(1, TS.COMPLETE, start_ago=500, seconds=140, value=0.81),
        trial(2, TS.PRUNED, start_ago=360, seconds=60),      # pruned trials count as finished work
        trial(3, TS.FAIL, start_ago=300, seconds=5),         # failures do not say how long a trial takes
        trial(4, TS.RUNNING, start_ago=30, steps={10: 0.5, 20: 0.62}, worker="h:1"),
        trial(5, TS.RUNNING, start_ago=250, worker="h:2"),   # older than the mean
        trial(6, TS.WAITING),
    ]


def test_trial_seconds():
    assert trial_seconds(trial(0, TS.COMPLETE, start_ago=10, seconds=4)) == 4.0
    assert trial_seconds(trial(1, TS.RUNNING, start_ago=10)) is None


def test_summarize_counts_best_elapsed_and_eta():
    snap = summarize(study_trials(), target=10, now=NOW)
    assert (snap.done, snap.target, snap.running) == (3, 10, 2)
    assert snap.best == 0.81 and snap.best_trial == 1
    assert snap.elapsed_s == 600.0 and snap.mean_trial_s == pytest.approx(100.0)
    assert snap.workers == 2  # two distinct workers run trials now
    # 7 left: #4 needs 100-30 = 70 s, #5 is past the mean and needs 5% (5 s), 5 more need 100 s each
    assert snap.eta_s == pytest.approx((70 + 5 + 5 * 100) / 2)
    r4, r5 = snap.in_flight
    assert (r4.number, r4.age_s, r4.step, r4.dev, r4.worker) == (4, 30.0, 20, 0.62, "h:1")
    assert (r5.step, r5.dev) == (None, None)


def test_summarize_with_done_workers_and_start_given():
    started = NOW - dt.timedelta(seconds=90)
    snap = summarize(study_trials(), target=4, done=4, workers=4, now=NOW, started=started)
    assert snap.elapsed_s == 90.0 and snap.eta_s == 0.0 and snap.workers == 4
    d = snap.to_dict()
    assert d["done"] == 4 and d["eta_s"] == 0.0 and d["in_flight"][0]["step"] == 20


def test_summarize_without_finished_trials():
    snap = summarize([trial(0, TS.RUNNING, start_ago=5)], target=3, now=NOW)
    assert snap.eta_s is None and snap.best is None and snap.mean_trial_s is None and snap.workers == 1
    empty = summarize([], target=3, now=NOW)
    assert empty.elapsed_s == 0.0 and empty.done == 0 and empty.in_flight == []


def test_estimate_eta():
    assert estimate_eta([], 3, [], 1) is None
    assert estimate_eta([10.0], 0, [], 1) == 0.0
    assert estimate_eta([10.0, 30.0], 4, [], 2) == 40.0
    assert estimate_eta([10.0], 2, [4.0, 50.0, 1.0], 1) == pytest.approx(6.0 + 0.5)  # only 2 left: 2 running count


def test_format_duration():
    assert [format_duration(s) for s in (None, 0, 44.6, 243, 3720, 90000)] == ["?", "0s", "45s", "4m03s", "1h02m",
                                                                                "1d01h"]


def test_format_line_and_advance():
    snap = summarize(study_trials(), target=10, now=NOW)
    line = format_line(snap, "spearman")
    assert line.startswith("3/10 trials | best spearman 0.8100 (#1) | 10m00s elapsed | ETA ~4m48s (2 workers)")
    assert "running #4 30s step 20 dev 0.6200, #5 4m10s" in line
    later = advance(snap, 60)
    assert later.elapsed_s == 660 and later.eta_s == pytest.approx(snap.eta_s - 60) and later.in_flight[0].age_s == 90
    assert advance(snap, 0) is snap
    done = Snapshot(done=2, target=2, best=0.5, best_trial=0, elapsed_s=5)
    assert format_line(done, unit="cells") == "2/2 cells | best value 0.5000 (#0) | 5s elapsed | done"
    assert "ETA ? (no trial has finished or reported a training step yet)" in format_line(Snapshot(done=0, target=2))


def _snaps(*dones):
    """fetch() returning one snapshot per call with these done counts, then the last one again."""
    seq = [Snapshot(done=d, target=3, elapsed_s=float(i)) for i, d in enumerate(dones)]
    calls = []

    def fetch():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("storage hiccup")  # skipped; the display goes on
        return seq[min(len(calls) - 1, len(seq) - 1)]
    return fetch


def test_live_progress_in_a_log_prints_per_finished_trial_without_carriage_returns():
    out: list[str] = []
    stream = io.StringIO()
    live = LiveProgress(_snaps(0, 0, 1, 1, 1, 2), log=out.append, stream=stream, tty=False, poll_s=0.05,
                        every_s=3600).start()
    deadline = time.monotonic() + 10
    while len(out) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    live.stop()
    assert out[:3] == [line for line in out[:3] if line.startswith("progress: ")]
    assert [line.split(" ")[1] for line in out] == ["0/3", "1/3", "2/3"]  # one line each, not one per poll
    assert stream.getvalue() == "" and "\r" not in "".join(out)


def test_live_progress_on_a_terminal_redraws_in_place_and_clears_for_log_lines():
    stream = io.StringIO()
    logged: list[str] = []
    closed: list[bool] = []
    live = LiveProgress(lambda: Snapshot(done=1, target=4, best=0.7, best_trial=0, eta_s=30.0, elapsed_s=10.0),
                        log=lambda m: (logged.append(m), stream.write(m + "\n")), stream=stream, tty=True,
                        poll_s=0.05, on_stop=lambda: closed.append(True)).start()
    deadline = time.monotonic() + 10
    while "1/4 trials" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    live.log("worker 0: trial 1 COMPLETE 0.7")
    live.stop()
    text = stream.getvalue()
    assert text.startswith(CLEAR + "1/4 trials | best value 0.7000 (#0) | 10s elapsed | ETA ~30s (1 worker)")
    assert CLEAR + "worker 0: trial 1 COMPLETE 0.7\n" in text  # the live line is erased before a log line
    # stop() leaves no live line behind (erased, or already erased by the log line)
    assert (text.endswith(CLEAR) or text.endswith("COMPLETE 0.7\n")) and closed == [True] and live.lines == []


def test_format_status_shows_the_timing():
    from test_study_status import GRID

    st = {**GRID, "timing": {"done": 1, "target": 3, "best": 0.81, "best_trial": 0, "elapsed_s": 125.0,
                             "mean_trial_s": 60.0, "eta_s": 130.0, "workers": 2},
          "running": [{**GRID["running"][0], "step": 40, "dev": 0.79}]}
    text = format_status(st)
    assert "time: 1/3 finished, 2m05s elapsed, 1m00s per trial, ETA ~2m10s at 2 workers" in text
    assert "step 40 dev 0.7900" in text
    st["timing"] = {**st["timing"], "done": 3, "eta_s": 0.0}
    st["progress"] = {**st["progress"], "running": 0}
    assert "time: 3/3 finished, 2m05s elapsed, 1m00s per trial, done" in format_status(st)


# --------------------------------------------------------------------------------------------
# step k/N of running trials: an ETA before any trial has finished


def training(number, start_ago, step, steps, run=1, runs=1, worker=None):
    t = trial(number, TS.RUNNING, start_ago=start_ago, worker=worker)
    t.user_attrs["train_progress"] = {"step": step, "steps": steps, "run": run, "runs": runs}
    return t


def test_eta_from_step_rates_before_any_trial_finished():
    # #0: 100 of 400 steps after 60 s -> 240 s in all, 180 s left; #1: seed 2 of 2, half its steps
    # after 300 s -> (1 + 0.5) / 2 = 75% done -> 400 s in all, 100 s left. Mean projection 320 s.
    trials = [training(0, 60, 100, 400, worker="h:1"), training(1, 300, 50, 100, run=2, runs=2, worker="h:2")]
    snap = summarize(trials, target=5, now=NOW)
    r0, r1 = snap.in_flight
    assert r0.fraction == pytest.approx(0.25) and r0.projected_s == pytest.approx(240.0)
    assert r1.fraction == pytest.approx(0.75) and r1.projected_s == pytest.approx(400.0)
    # 5 left on 2 workers: 180 + 100 for the running two, 3 more at the mean projection of 320 s
    assert snap.mean_trial_s is None
    assert snap.eta_s == pytest.approx((180 + 100 + 3 * 320) / 2)
    line = format_line(snap, metric="spearman")
    assert "ETA ~" in line and "#0 1m00s step 100/400" in line and "#1 5m00s step 50/100 seed 2/2" in line


def test_finished_trials_still_set_the_mean_and_bad_progress_is_ignored():
    done = trial(0, TS.COMPLETE, start_ago=900, seconds=100, value=0.5)
    running = training(1, 50, 10, 400)
    broken = trial(2, TS.RUNNING, start_ago=20)
    broken.user_attrs["train_progress"] = {"step": "x"}
    snap = summarize([done, running, broken], target=4, now=NOW)
    assert snap.eta_s == pytest.approx(((100 - 50) + (100 - 20) + 1 * 100) / 2)  # two running: two workers
    assert snap.in_flight[1].train_step is None
    assert estimate_eta([], 3, [10.0], 1, [None]) is None  # no step rate, nothing finished: unknown


def test_a_running_trial_well_in_is_projected_by_its_own_rate():
    # A confirm study: three finished 30-minute cells, then two recipe cells with twice the steps
    # and longer batches, 20% in after 30 minutes (projected 150 minutes each); one cell queued.
    # The finished mean alone would say the running two are nearly done.
    done = [trial(n, TS.COMPLETE, start_ago=9000, seconds=1800, value=0.9) for n in range(3)]
    running = [training(3, 1800, 288, 1440, worker="h:1"), training(4, 1800, 288, 1440, worker="h:2")]
    snap = summarize(done + running, target=6, now=NOW)
    assert [r.projected_s for r in snap.in_flight] == [pytest.approx(9000.0)] * 2
    queued_mean = (3 * 1800 + 2 * 9000) / 5
    assert snap.eta_s == pytest.approx((2 * (9000 - 1800) + queued_mean) / 2)
    assert snap.mean_trial_s == pytest.approx(1800.0)  # the finished trials' own mean, as shown
    # below TRUST_FRACTION the first steps (which also load the model) are not trusted yet
    early = [training(3, 300, 10, 1440, worker="h:1")]
    assert summarize(done + early, target=6, now=NOW).eta_s == pytest.approx(((1800 - 300) + 2 * 1800) / 1)


def test_step_reporter_writes_first_step_then_throttles_and_never_fails(caplog):
    from objectives.common import StepReporter

    study = optuna.create_study()
    live = study.ask()
    report = StepReporter(live, run=1, runs=3, every_s=3600)
    report(1, 50)
    report(2, 50)                      # within every_s: not written
    assert live.user_attrs["train_progress"] == {"step": 1, "steps": 50, "run": 1, "runs": 3}
    report(50, 50)                     # the last step is always written
    assert live.user_attrs["train_progress"]["step"] == 50

    class Broken:
        number = 7

        def set_user_attr(self, key, value):
            raise RuntimeError("database is gone")

    broken = StepReporter(Broken(), every_s=0)
    broken(1, 10)
    broken(2, 10)
    assert sum("could not record its training progress" in r.getMessage() for r in caplog.records) == 1


def test_step_reporter_stops_the_trial_when_the_storage_stays_unreachable():
    """Past the retry window the trial cannot be recorded: stop it at once, do not stretch every
    later step by another retry window (a partitioned host trained for minutes before)."""
    from objectives.common import StepReporter
    from tuner.storage import StorageUnavailable

    class Cut:
        number = 3
        calls = 0

        def set_user_attr(self, key, value):
            Cut.calls += 1
            raise StorageUnavailable("lost the connection to the storage for 11s")

    report = StepReporter(Cut(), every_s=0)
    with pytest.raises(StorageUnavailable):
        report(1, 10)
    assert Cut.calls == 1


def test_format_status_shows_a_running_trials_training_step():
    from test_study_status import GRID

    st = {**GRID, "running": [{**GRID["running"][0], "train_step": 120, "train_steps": 1400, "run": 1, "runs": 1}],
          "timing": {"done": 0, "target": 3, "best": None, "best_trial": None, "elapsed_s": 60.0,
                     "mean_trial_s": None, "eta_s": None, "workers": 1}}
    text = format_status(st)
    assert "age 3s      step 120/1400 {" in text
    assert "ETA ? (no trial has finished or reported a training step yet)" in text
