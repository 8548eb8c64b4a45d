"""Study files: the shipped studies, validation errors (one line naming file and key, exit 2,
nothing written), the search space and the grid cells."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import optuna
import pytest

from _tiny import toml_dump as tomllib_dump
from tuner.cli import main
from tuner.losses.registry import SEED_FINETUNE_ROWS as FINETUNE_ROWS
from tuner.errors import TunerError
from tuner.study import cell_key, find_study_file, is_empty_draw, list_study_files, load_spec, parse_spec

REPO_ROOT = Path(__file__).resolve().parents[2]

SHIPPED = ("sts", "sts-grid", "senteval", "senteval-grid", "sts-quick", "sts-grid-quick", "senteval-quick",
           "senteval-grid-quick")
STS7 = ["sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr"]


def test_shipped_studies_parse_and_have_the_seed_grids():
    names = {p.stem for p in list_study_files()}
    assert set(SHIPPED) <= names
    grid = load_spec("sts-grid")
    assert grid.sampler == "grid" and grid.protocol == "seed" and grid.task == "sts"
    assert grid.losses == list(FINETUNE_ROWS) and len(grid.losses) == 8
    assert grid.grid_datasets == STS7
    assert grid.n_cells == len(grid.models) * 8 * 7
    assert grid.base.taus == {"cosent": 20.0, "ibn": 20.0, "angle": 1.0} and grid.base.pooling == "cls"
    sgrid = load_spec("senteval-grid")
    assert sgrid.grid_datasets == ["mr", "cr", "mpqa", "subj"] and sgrid.n_cells == len(sgrid.models) * 32
    tpe = load_spec("sts")
    assert tpe.sampler == "tpe" and tpe.n_trials == 40 and tpe.protocol == "standard"
    assert tpe.train_datasets == tpe.eval_datasets == ["stsb"]
    assert tpe.search.losses.mode == "any" and len(tpe.search.losses.reachable()) == 15
    assert set(tpe.search.params) == {"w_cos_mse", "w_cosent", "w_ibn", "w_angle", "tau_cosent", "tau_ibn",
                                      "tau_angle", "pooling", "lr", "epochs"}
    params = tpe.search.params
    assert params["tau_cosent"].log and params["lr"].log and not params["w_cosent"].log
    assert params["w_cosent"].low == 0.1  # a loss that is on has a weight > 0
    assert params["pooling"].choices == ("cls", "avg", "cls_avg", "max")
    assert load_spec("senteval").task == "classification"


@pytest.mark.parametrize("name", ["sts-quick", "sts-grid-quick", "senteval-quick", "senteval-grid-quick"])
def test_quick_studies_are_small(name):
    spec = load_spec(name)
    assert spec.models == ["all-MiniLM-L6-v2"]
    assert spec.base.max_train_examples <= 300 and spec.base.max_eval_examples <= 300
    assert spec.base.max_seq_length <= 64 and spec.base.epochs == 1
    assert spec.target_trials <= 10


def test_find_study_by_name_or_path_and_typo_hint(tmp_path):
    assert find_study_file("sts") == REPO_ROOT / "studies" / "sts.toml"
    assert find_study_file(str(REPO_ROOT / "studies" / "sts.toml")).name == "sts.toml"
    with pytest.raises(TunerError, match="unknown study 'sts-qick'; did you mean 'sts-quick'"):
        find_study_file("sts-qick")
    with pytest.raises(TunerError, match="does not exist"):
        find_study_file(str(tmp_path / "nope.toml"))


BASE_TPE = {
    "task": "sts", "models": ["all-MiniLM-L6-v2"], "sampler": "tpe", "n_trials": 5,
    "data": {"train": ["stsb"]},
    "search": {"w_cosent": [0.0, 1.0], "tau_cosent": [5.0, 50.0], "pooling": ["cls", "avg"]},
}
BASE_GRID = {
    "task": "sts", "models": ["all-MiniLM-L6-v2"], "sampler": "grid",
    "data": {"datasets": ["stsb", "sickr"]}, "grid": {"losses": ["cos_mse", "cosent"]},
}


def with_(base: dict, path: str, value) -> dict:
    """Copy of ``base`` with ``a.b.c`` set (value ``...`` deletes it)."""
    out = json.loads(json.dumps(base))
    keys = path.split(".")
    node = out
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is ...:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return out


ERRORS = [
    (BASE_TPE, "colour", "blue", r"key 'colour': unknown key"),
    (BASE_TPE, "search.w_cosnt", [0.0, 1.0], r"key 'search.w_cosnt': unknown key; did you mean 'search.w_cosent'"),
    (BASE_TPE, "budget.epoch", 2, r"key 'budget.epoch': unknown key; did you mean 'budget.epochs'"),
    (BASE_TPE, "task", "regression", r"key 'task': 'regression' is not one of sts, classification"),
    (BASE_TPE, "n_trials", "forty", r"key 'n_trials': must be an integer"),
    (BASE_TPE, "n_trials", 0, r"key 'n_trials': is 0; use 1 or more"),
    (BASE_TPE, "n_trials", ..., r"key 'n_trials': is missing"),
    (BASE_TPE, "models", [], r"key 'models': is empty"),
    (BASE_TPE, "models", "all-MiniLM-L6-v2", None),  # a single string is accepted
    (BASE_TPE, "search.tau_cosent", [50.0, 5.0], r"key 'search.tau_cosent': low 50 is not below high 5"),
    (BASE_TPE, "search.tau_cosent", [0.0, 5.0], r"key 'search.tau_cosent\[0\]': is 0.0; it must be > 0"),
    (BASE_TPE, "search.lr", {"low": 1e-4, "high": 1e-5}, r"key 'search.lr': low 0.0001 is not below high 1e-05"),
    (BASE_TPE, "search.w_ibn", [0.0, 1.0, 2.0], r"key 'search.w_ibn': a list means a range \[low, high\]"),
    (BASE_TPE, "search.losses", "cosent+focal", r"key 'search.losses': unknown loss 'focal'"),
    (BASE_TPE, "search.losses", ["cosent", "CoSENT"], r"key 'search.losses': lists a combination twice"),
    (BASE_TPE, "search.losses", 3, r"key 'search.losses': must be \"any\""),
    (with_(BASE_TPE, "search.losses", "any"), "search.w_cosent", [0.0, 1.0],
     r"key 'search.w_cosent': is the weight of a loss that is on, so it must be > 0"),
    (with_(BASE_TPE, "search.losses", "ibn"), "search.w_cosent", [0.1, 1.0],
     r"key 'search.w_cosent': cosent is never on in this study"),
    (BASE_TPE, "search.w_ibn", {"choices": []}, r"key 'search.w_ibn.choices': is empty"),
    (BASE_TPE, "search.w_ibn", [-1.0, 1.0], r"key 'search.w_ibn\[0\]': is -1.0; it must be >= 0"),
    (BASE_TPE, "search.pooling", ["cls", "mean_of_max"], r"key 'search.pooling\[1\]': unknown pooling 'mean_of_max'"),
    (BASE_TPE, "search.pooling", [], r"key 'search.pooling': is empty"),
    (BASE_TPE, "search.epochs", [1.5, 3], r"key 'search.epochs\[0\]': must be an integer"),
    (BASE_TPE, "search", {}, r"key 'search': is missing or empty"),
    (BASE_TPE, "data.train", ["stsbb"], r"key 'data.train\[0\]': 'stsbb' is neither a built-in dataset nor an existing "
                                        r"file; did you mean 'stsb'"),
    (BASE_TPE, "data.train", ["mr"], r"key 'data.train\[0\]': 'mr' is classification data but data.train takes sts data"),
    (BASE_TPE, "pruner", "median", r"key 'budget.eval_every': is missing; the median pruner needs"),
    (BASE_TPE, "pruner", {"type": "median", "reduction_factor": 3}, r"key 'pruner.reduction_factor': does not apply"),
    (BASE_TPE, "grid", {"losses": "all"}, r"key 'grid': is for grid studies"),
    (BASE_TPE, "train.batch_size", 1, r"key 'train.batch_size': is 1; use 2 or more"),
    (BASE_TPE, "train.pooling", "middle", r"key 'train.pooling': unknown pooling"),
    (BASE_TPE, "train.taus", {"cosent": -1}, r"key 'train.taus': cosent is -1; a temperature must be > 0"),
    (BASE_TPE, "train.lr", "fast", r"key 'train.lr': must be a number"),
    (BASE_TPE, "budget.max_train_examples", 1, r"key 'budget.max_train_examples': is 1; use 2 or more"),
    (BASE_TPE, "models", ["./no/such/model"], r"key 'models\[0\]': folder .* is not a model folder"),
    (BASE_GRID, "grid.losses", [], r"key 'grid.losses': is empty"),
    (BASE_GRID, "grid.losses", ["cosent", "focal"], r"key 'grid.losses\[1\]': unknown loss 'focal'"),
    (BASE_GRID, "data.datasets", [], r"key 'data.datasets': is empty"),
    (BASE_GRID, "n_trials", 10, r"key 'n_trials': is not used by grid studies"),
    (BASE_GRID, "data.train", ["stsb"], r"key 'data.train': grid studies train and score each cell on one dataset"),
    (BASE_GRID, "grid.pooling", ["cls", "cls"], r"key 'grid.pooling': lists a pooling twice"),
    (BASE_GRID, "sampler", "bayes", r"key 'sampler': 'bayes' is not one of tpe, random, grid"),
    (BASE_TPE, "sampler", {"multivariate": True}, r"key 'sampler.type': is missing; use one of tpe, random, grid"),
    (BASE_TPE, "sampler", {"type": "random", "group": True}, r"key 'sampler.group': does not apply to the random"),
    (BASE_TPE, "sampler", {"type": "tpe", "group": 1}, r"key 'sampler.group': must be true or false"),
    (BASE_TPE, "sampler", {"type": "tpe", "gamma": 0.1}, r"key 'sampler.gamma': unknown key"),
    (BASE_TPE, "sampler", {"type": "tpe", "multivariate": False, "group": True},
     r"key 'sampler.group': needs multivariate = true"),
    (BASE_TPE, "train.seed", "x", r"key 'train.seed'"),
]


@pytest.mark.parametrize("base,path,value,pattern", ERRORS, ids=[f"{e[1]}={e[2]!r}"[:40] for e in ERRORS])
def test_validation_errors_name_file_and_key(tmp_path, base, path, value, pattern):
    raw = with_(base, path, value)
    file = tmp_path / "bad.toml"
    if pattern is None:
        parse_spec(raw, file)
        return
    with pytest.raises(TunerError, match=pattern) as info:
        parse_spec(raw, file)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{file}: key '")  # names the file, then the key


def test_invalid_toml_is_one_line(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text('task = "sts"\nmodels = ["x"\n')
    with pytest.raises(TunerError, match=r"broken.toml: not valid TOML: .*fix the syntax"):
        load_spec(bad)


def test_grid_cells_are_the_product_in_a_stable_order():
    spec = parse_spec(with_(with_(BASE_GRID, "models", ["m1", "m2"]), "grid.pooling", ["cls", "avg"]))
    cells = spec.cells()
    assert len(cells) == spec.n_cells == 2 * 2 * 2 * 2
    expected = [dict(zip(("model", "loss", "dataset", "pooling"), v))
                for v in itertools.product(["m1", "m2"], ["cos_mse", "cosent"], ["stsb", "sickr"], ["cls", "avg"])]
    assert cells == expected
    assert len({cell_key(c) for c in cells}) == 16
    assert cell_key({"b": 1, "a": "x"}) == cell_key({"a": "x", "b": 1})
    assert parse_spec(with_(BASE_GRID, "grid.losses", "all")).losses == list(FINETUNE_ROWS)
    # row names are normalised to the seed's order
    assert parse_spec(with_(BASE_GRID, "grid.losses", ["angle+cosent"])).losses == ["cosent+angle"]


def test_grid_trial_config_from_a_queued_cell():
    spec = parse_spec(BASE_GRID)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"model": "all-MiniLM-L6-v2", "loss": "cosent", "dataset": "sickr"})
    config = spec.suggest(study.ask())
    assert config.loss == "cosent" and config.weights == {"cos_mse": 0.0, "cosent": 1.0, "ibn": 0.0, "angle": 0.0}
    assert config.train == ["sickr"] and config.eval_sets == ["sickr"]
    assert config.taus == {"cosent": 20.0, "ibn": 20.0, "angle": 1.0} and config.seed == 42
    assert config.protocol == "seed" and config.task == "sts"


def test_legacy_weight_space_samples_within_ranges_and_fixed_values_stay():
    raw = with_(BASE_TPE, "search.w_ibn", {"choices": [0, 1]})
    raw = with_(raw, "search.w_angle", 0.5)
    raw = with_(raw, "search.lr", {"low": 1e-5, "high": 1e-4})
    raw = with_(raw, "search.epochs", [1, 3])
    raw = with_(raw, "search.batch_size", [16, 32])
    spec = parse_spec(raw)
    assert spec.search.losses.mode == "legacy"
    assert spec.search.params["w_angle"].kind == "fixed" and spec.search.params["lr"].log
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        config = spec.suggest(trial)
        assert 0 <= config.weights["cosent"] <= 1 and config.weights["ibn"] in (0.0, 1.0)
        assert config.weights["angle"] == 0.5 and config.weights["cos_mse"] == 0.0
        assert 5 <= config.taus["cosent"] <= 50 and config.taus["ibn"] == 20.0
        assert config.pooling in ("cls", "avg") and 1e-5 <= config.lr <= 1e-4
        assert config.epochs in (1, 2, 3) and config.batch_size in (16, 32)
        assert config.loss == "+".join(k for k in ("cosent", "ibn", "angle") if config.weights[k] > 0)
        assert set(trial.params) == {"w_cosent", "w_ibn", "tau_cosent", "pooling", "lr", "epochs", "batch_size"}
        study.tell(trial, 0.0)


ONOFF = with_(with_(with_(BASE_TPE, "search.losses", "any"), "search.w_cosent", [0.1, 1.0]),
              "search.tau_ibn", [5.0, 50.0])


def test_on_off_space_reaches_every_combination_with_conditional_params():
    spec = parse_spec(ONOFF)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    seen, empty = set(), 0
    for _ in range(400):
        trial = study.ask()
        config = spec.suggest(trial)
        flags = {n: trial.params[f"use_{n}"] for n in ("cos_mse", "cosent", "ibn", "angle")}
        if not any(flags.values()):
            empty += 1
            assert is_empty_draw(trial.params)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        assert not is_empty_draw(trial.params)
        on = tuple(n for n, f in flags.items() if f)
        assert config.losses == on and config.loss == "+".join(on)
        # weights > 0 exactly for the losses on; conditional params only when their loss is on
        assert all((config.weights[n] > 0) == flags[n] for n in flags)
        assert ("w_cosent" in trial.params) == flags["cosent"]
        assert ("tau_cosent" in trial.params) == flags["cosent"]
        assert ("tau_ibn" in trial.params) == flags["ibn"]
        if flags["cosent"]:
            assert 0.1 <= config.weights["cosent"] <= 1.0 and 5 <= config.taus["cosent"] <= 50
        for name in ("cos_mse", "ibn", "angle"):
            if flags[name]:
                assert config.weights[name] == 1.0  # not searched: weight 1 when on
        seen.add(config.loss)
        study.tell(trial, 0.0)
    assert len(seen) == 15  # every non-empty combination, cos_mse included
    assert 0 < empty < 60  # about 1 in 16


def test_restricted_and_fixed_combinations():
    base = with_(BASE_TPE, "search.w_cosent", [0.1, 1.0])
    spec = parse_spec(with_(base, "search.losses", ["cosent", "IBN+angle", "cos_mse+cosent"]))
    assert spec.search.losses.combos == ("cosent", "ibn+angle", "cos_mse+cosent")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    rows = set()
    for _ in range(30):
        trial = study.ask()
        rows.add(spec.suggest(trial).loss)
        assert trial.params["losses"] in spec.search.losses.combos
        study.tell(trial, 0.0)
    assert rows == {"cosent", "ibn+angle", "cos_mse+cosent"}
    fixed = parse_spec(with_(base, "search.losses", "angle+cosent"))
    config = fixed.suggest(optuna.trial.FixedTrial({"w_cosent": 0.5, "tau_cosent": 10.0, "pooling": "avg"}))
    assert config.loss == "cosent+angle" and config.weights["cosent"] == 0.5 and config.weights["angle"] == 1.0


def test_on_off_sampler_is_multivariate_grouped_tpe():
    sampler = parse_spec(ONOFF).build_sampler()
    assert sampler._multivariate and sampler._group and sampler._constant_liar


def test_pruners_are_configurable():
    raw = with_(with_(BASE_TPE, "budget.eval_every", 10), "pruner",
                {"type": "hyperband", "min_resource": 2, "reduction_factor": 3})
    assert isinstance(parse_spec(raw).pruner.build(), optuna.pruners.HyperbandPruner)
    raw = with_(with_(BASE_TPE, "budget.eval_every", 10), "pruner", {"type": "median", "n_startup_trials": 3})
    pruner = parse_spec(raw).pruner.build()
    assert isinstance(pruner, optuna.pruners.MedianPruner) and pruner._n_startup_trials == 3
    assert isinstance(parse_spec(BASE_TPE).pruner.build(), optuna.pruners.NopPruner)
    assert parse_spec(raw).suggest(optuna.trial.FixedTrial(
        {"w_cosent": 0.5, "tau_cosent": 10.0, "pooling": "avg"})).eval_every == 10


def test_sampler_table_sets_tpe_options_and_train_seed_fixes_the_training_seed():
    raw = with_(with_(BASE_TPE, "sampler", {"type": "tpe", "multivariate": False, "n_startup_trials": 3}),
                "train.seed", 42)
    spec = parse_spec(with_(raw, "seed", 7))
    sampler = spec.build_sampler()
    assert not sampler._multivariate and not sampler._group and sampler._n_startup_trials == 3
    assert sampler._constant_liar                       # the defaults stay where the table is silent
    assert spec.seed == 7 and spec.base.seed == 42      # sampler seed 7, training seed 42
    assert parse_spec(with_(BASE_TPE, "seed", 7)).base.seed == 7
    assert parse_spec(with_(BASE_TPE, "sampler", {"type": "random"})).sampler == "random"


def test_seed_and_sampler():
    spec = parse_spec(BASE_TPE)
    sampler = spec.build_sampler()
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._constant_liar is True
    assert isinstance(parse_spec(BASE_GRID).build_sampler(), optuna.samplers.RandomSampler)


# --------------------------------------------------------------------------------------------
# CLI: bad input -> one line, exit 2, nothing written


def test_optimize_rejects_bad_study_before_touching_storage(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(tomllib_dump(with_(BASE_GRID, "grid.losses", [])))
    code = main(["optimize", "--study", str(bad), "--storage", f"sqlite:///{tmp_path / 'x.db'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "key 'grid.losses': is empty" in err
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "tuner.db").exists()


@pytest.mark.parametrize("args,pattern", [
    (["--workers", "0"], "must be 1 or more"),
    (["--gpus", "7"], "no GPU 7"),
    (["--storage", "postgress://u@h/db"], "scheme 'postgress://'"),
])
def test_optimize_bad_flags_exit_2(tmp_path, monkeypatch, capsys, args, pattern):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["optimize", "--study", "sts-quick", *args])
    except SystemExit as exc:  # argparse-level errors
        code = exc.code
    assert code == 2
    assert pattern in capsys.readouterr().err
    assert not (tmp_path / "tuner.db").exists()


def test_studies_command_lists_and_json(capsys):
    assert main(["studies"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert main(["studies", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["studies"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["sts-grid"]["cells"] == len(load_spec("sts-grid").models) * 56
    assert by_name["sts-quick"]["sampler"] == "tpe" and by_name["sts-quick"]["error"] is None


def test_repeats_make_the_seed_a_grid_axis_and_reach_the_run_config():
    spec = parse_spec(with_(BASE_GRID, "repeats", 3))
    assert spec.seeds == [42, 43, 44] and spec.n_cells == 2 * 2 * 3
    assert {c["seed"] for c in spec.cells()} == {42, 43, 44}
    assert len({cell_key(c) for c in spec.cells()}) == 12  # exactly-once per (cell, seed)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"model": "all-MiniLM-L6-v2", "loss": "cosent", "dataset": "stsb", "seed": 44})
    assert spec.suggest(study.ask()).seed == 44
    assert parse_spec(BASE_GRID).cells()[0].keys() == {"model", "loss", "dataset"}  # repeats = 1: no axis
    with pytest.raises(TunerError, match="key 'repeats': is 0; use 1 or more"):
        parse_spec(with_(BASE_GRID, "repeats", 0))
