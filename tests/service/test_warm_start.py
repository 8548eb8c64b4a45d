"""Warm starts (tuner.service._warm_start): the best k complete trials of one study enqueued, once, as the first
trials of another in the same storage; parameters outside the new space dropped; the study-file key;
unknown studies and grid studies refused with one line. Fake-objective workers: no torch."""
from __future__ import annotations

import tomllib

import optuna
import pytest

from _tiny import start_fake_worker, unique, wait_all, write_grid_study, write_tpe_study
from tuner.service import _orchestrate as orchestrate
from tuner.cli import main
from tuner.errors import TunerError
from tuner.service._study_service import StudyService
from tuner.storage import open_storage
from tuner.study import load_spec, parse_spec
from tuner.service._warm_start import MARK, carry_over, resolve, space_distributions, warm_start

TS = optuna.trial.TrialState


def narrow_study(folder, name, model_dir, data_dir, n_trials=4, extra=""):
    """A TPE study like write_tpe_study's with a narrower w_cosent range and no w_ibn."""
    text = write_tpe_study(folder, name, model_dir, data_dir, n_trials=n_trials).read_text()
    text = text.replace("w_cosent = [0.0, 1.0]", "w_cosent = [0.2, 0.5]").replace("w_ibn = { choices = [0, 1] }\n", "")
    text = text.replace('sampler = "tpe"', f'sampler = "tpe"\n{extra}')
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture()
def finished_source(tmp_path, tiny_data_dir, tiny_model_dir):
    """A finished 6-trial TPE study (fake objective: -(w_cosent - 0.3)^2) in a fresh SQLite file."""
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    path = write_tpe_study(tmp_path, unique("src"), tiny_model_dir, tiny_data_dir, n_trials=6)
    assert wait_all([start_fake_worker(path, url, 0, sleep=0.01)], timeout=120) == [0]
    return url, load_spec(path).name


def test_space_distributions_and_carry_over(tmp_path, tiny_data_dir, tiny_model_dir):
    spec = load_spec(narrow_study(tmp_path, "n", tiny_model_dir, tiny_data_dir))
    dists = space_distributions(spec)
    assert set(dists) == {"w_cosent", "tau_cosent"}
    kept, dropped = carry_over({"w_cosent": 0.3, "tau_cosent": 70.0, "w_ibn": 1.0, "model": "x"}, dists)
    assert kept == {"w_cosent": 0.3}
    assert dropped == {"tau_cosent": "outside this study's range", "w_ibn": "not in this search space",
                       "model": "not in this search space"}
    raw = tomllib.loads(spec.path.read_text())
    raw["search"] = {"losses": "any", "pooling": ["cls", "avg"], "batch_size": [8, 16], "epochs": [1, 3]}
    onoff = space_distributions(parse_spec(raw, spec.path))
    assert {"use_cosent", "use_ibn", "use_angle", "use_cos_mse", "pooling", "batch_size", "epochs"} <= set(onoff)
    kept, dropped = carry_over({"use_ibn": True, "pooling": "max", "batch_size": 16.0, "epochs": 2, "use_angle": 1},
                               onoff)
    assert kept == {"use_ibn": True, "batch_size": 16, "epochs": 2} and set(dropped) == {"pooling", "use_angle"}


def test_warm_start_enqueues_the_best_trials_once(tmp_path, tiny_data_dir, tiny_model_dir, finished_source):
    url, source = finished_source
    path = narrow_study(tmp_path, unique("dst"), tiny_model_dir, tiny_data_dir, n_trials=5)
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        src = optuna.load_study(study_name=source, storage=handle.storage)
        best3 = sorted((t for t in src.trials if t.state == TS.COMPLETE), key=lambda t: -t.value)[:3]
        service = StudyService(load_spec(path), handle)
        study, _ = service.prepare()
        lines: list[str] = []
        n = warm_start(service, study, source, k=3, log=lines.append)
        waiting = study.get_trials(deepcopy=False, states=(TS.WAITING,))
        assert 1 <= n == len(waiting) <= 3 and len(lines) == 1
        assert lines[0].startswith(f"warm start from '{source}': enqueued {n} of its best 3 complete trial(s)")
        assert "dropped: " in lines[0] and "w_ibn (not in this search space) in 3 trial(s)" in lines[0]
        marks = [t.user_attrs[MARK] for t in waiting]
        assert all(m.startswith(f"{source}#") for m in marks)
        by_number = {t.number: t for t in best3}
        for t in waiting:
            fixed = t.system_attrs["fixed_params"]
            origin = by_number[int(t.user_attrs[MARK].split("#")[1])]
            assert set(fixed) <= {"w_cosent", "tau_cosent"} and fixed.get("tau_cosent") == origin.params["tau_cosent"]
            if "w_cosent" in fixed:
                assert 0.2 <= fixed["w_cosent"] <= 0.5 and fixed["w_cosent"] == origin.params["w_cosent"]
        again: list[str] = []
        assert warm_start(service, study, source, k=3, log=again.append) == 0  # the same command again
        assert "already done" in again[0] and len(study.get_trials(deepcopy=False)) == n
    finally:
        handle.close()
    # the enqueued configurations are the new study's first trials
    assert wait_all([start_fake_worker(path, url, 0, sleep=0.01)], timeout=120) == [0]
    check = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        trials = optuna.load_study(study_name=load_spec(path).name, storage=check.storage).trials
        assert [MARK in t.user_attrs for t in trials] == [True] * n + [False] * (5 - n)
        assert all(t.state == TS.COMPLETE for t in trials)
    finally:
        check.close()


def test_unknown_or_own_study_is_one_clear_error(tmp_path, tiny_data_dir, tiny_model_dir, finished_source, capsys):
    url, source = finished_source
    name = unique("dst")
    path = narrow_study(tmp_path, name, tiny_model_dir, tiny_data_dir)
    with pytest.raises(TunerError, match=rf"--warm-start: no study 'nope' in .*it has: {source}"):
        orchestrate.run_study(path, url, warm_start="nope", progress=False)
    assert main(["optimize", "--study", str(path), "--storage", url, "--warm-start", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --warm-start: no study 'nope'")
    with pytest.raises(TunerError, match="that is the study being run"):
        orchestrate.run_study(path, url, warm_start=name, progress=False)
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:  # nothing was created for the refused runs
        assert name not in [s.study_name for s in handle.storage.get_all_studies()]
    finally:
        handle.close()


def test_grid_studies_refuse_warm_start(tmp_path, tiny_data_dir, tiny_model_dir, capsys):
    grid = write_grid_study(tmp_path, unique("grid"), tiny_model_dir, tiny_data_dir, datasets=("stsb",))
    with pytest.raises(TunerError, match="is a grid: it runs every cell anyway"):
        resolve(load_spec(grid), "other", None)
    url = f"sqlite:///{tmp_path / 'g.db'}"
    assert main(["optimize", "--study", str(grid), "--storage", url, "--warm-start", "other"]) == 2
    assert "runs every cell anyway" in capsys.readouterr().err
    assert not (tmp_path / "g.db").exists()
    raw = tomllib.loads(grid.read_text())
    with pytest.raises(TunerError, match=r"key 'warm_start': a grid study runs every cell anyway"):
        parse_spec({**raw, "warm_start": {"study": "other"}}, grid)


def test_study_file_key(tmp_path, tiny_data_dir, tiny_model_dir):
    spec = load_spec(narrow_study(tmp_path, "ws", tiny_model_dir, tiny_data_dir,
                                  extra='warm_start = { study = "quick", k = 3 }'))
    assert (spec.warm_start.study, spec.warm_start.k) == ("quick", 3)
    assert resolve(spec, None, None) == ("quick", 3)
    assert resolve(spec, "other", None) == ("other", 3) and resolve(spec, None, 7) == ("quick", 7)
    raw = tomllib.loads(spec.path.read_text())
    assert parse_spec({**raw, "warm_start": "quick"}, spec.path).warm_start.k == 5
    plain = parse_spec({k: v for k, v in raw.items() if k != "warm_start"}, spec.path)
    assert plain.warm_start is None and resolve(plain, None, None) is None
    with pytest.raises(TunerError, match="--warm-start-k needs --warm-start"):
        resolve(plain, None, 3)
    for bad, message in [({"study": "q", "k": 0}, r"key 'warm_start.k': is 0; use 1 or more"),
                         ({"study": "q", "k": "3"}, r"key 'warm_start.k': must be an integer"),
                         ({"k": 3}, r"key 'warm_start.study': is missing"),
                         ({"study": "q", "top": 3}, r"key 'warm_start.top': unknown key"),
                         ({"study": "ws"}, r"key 'warm_start.study': 'ws' is this study itself"),
                         (5, r"key 'warm_start': must be a table like")]:
        with pytest.raises(TunerError, match=message) as info:
            parse_spec({**raw, "warm_start": bad}, spec.path)
        assert "\n" not in str(info.value)


def test_adding_the_warm_start_key_to_a_started_study_resumes_it(tmp_path, tiny_data_dir, tiny_model_dir,
                                                                 finished_source):
    url, source = finished_source
    path = narrow_study(tmp_path, unique("later"), tiny_model_dir, tiny_data_dir)
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        StudyService(load_spec(path), handle).prepare()
        path.write_text(path.read_text().replace('sampler = "tpe"', f'sampler = "tpe"\nwarm_start = "{source}"'))
        StudyService(load_spec(path), handle).prepare()  # not "a different version of the file"
        path.write_text(path.read_text().replace("w_cosent = [0.2, 0.5]", "w_cosent = [0.2, 0.6]"))
        with pytest.raises(TunerError, match="different version"):
            StudyService(load_spec(path), handle).prepare()
    finally:
        handle.close()
