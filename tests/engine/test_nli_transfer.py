"""NLI transfer (issue #14 part 3): training on NLI rows, the nli-transfer protocol, its study files
and export. Tiny random-init model and tiny data only; the real-data grid is studies/nli-grid-cpu."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from optuna.distributions import CategoricalDistribution

from conftest import tiny_sentences
from tuner.config import ConfigError, RunConfig, from_arguments
from tuner.data.nli import subsample_premises
from tuner.errors import TunerError
from tuner.losses.combined import CombinedLoss
from tuner.losses.in_batch_negatives import hard_negatives_loss
from tuner.engine._train import NliTrainData, TripletData, _triplet_batch, nli_train_data

STS7 = ["sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr"]
LABELS = ("entailment", "neutral", "contradiction")


def nli_rows(n_premises: int = 12, seed: int = 1, no_contradiction_every: int = 4) -> pd.DataFrame:
    """Premises with one hypothesis per label; every ``no_contradiction_every``-th premise lacks its contradiction."""
    premises, hypotheses = tiny_sentences(n_premises, seed), tiny_sentences(3 * n_premises, seed + 1)
    rows = [(p, hypotheses[3 * i + j], label) for i, p in enumerate(premises) for j, label in enumerate(LABELS)
            if not (label == "contradiction" and i % no_contradiction_every == 0)]
    return pd.DataFrame(rows, columns=["premise", "hypothesis", "label"])


@pytest.fixture()
def nli_tsv(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_nli.tsv"
    nli_rows().to_csv(path, sep="\t", index=False)
    return path


# ---------------------------------------------------------------------------- the loss


def _cos(u, v) -> float:
    return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))


def _reference(anchor, positive, negative, tau) -> float:
    """Supervised SimCSE written out: -log exp(s_ii) / (sum_j exp(s_ij) + sum_{j in H} exp(t_ij))."""
    total = 0.0
    for i, h in enumerate(anchor):
        own = math.exp(tau * _cos(h, positive[i]))
        denominator = sum(math.exp(tau * _cos(h, p)) for p in positive)
        denominator += sum(math.exp(tau * _cos(h, n)) for n in negative)
        total += -math.log(own / denominator)
    return total / len(anchor)


A = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
P = [[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.0, 0.3, 1.0]]
N = [[0.5, 0.5, 0.0], [0.0, 0.6, 0.6], [0.7, 0.0, 0.4]]


def test_hard_negatives_loss_matches_a_hand_computed_3x3_reference():
    a, p, n = (torch.tensor(x, dtype=torch.float64) for x in (A, P, N))
    for tau in (1.0, 20.0):
        got = float(hard_negatives_loss(a, p, n, tau=tau))
        assert got == pytest.approx(_reference(A, P, N, tau), rel=1e-9)
    # tau = 1 by hand for anchor 0: cosines with p0, p1, p2, n0, n1, n2
    s = [_cos(A[0], x) for x in P + N]
    assert s[0] == pytest.approx(0.9 / math.sqrt(0.82)) and s[3] == pytest.approx(math.sqrt(0.5))
    # hard negatives only add candidates: the loss is above plain in-batch negatives
    plain = float(hard_negatives_loss(a, p, n[:0], tau=20.0))
    assert plain == pytest.approx(_reference(A, P, [], 20.0), rel=1e-9)
    assert float(hard_negatives_loss(a, p, n, tau=20.0)) > plain


def test_anchor_without_contradiction_only_gets_in_batch_negatives():
    """Row 1 has no contradiction: no hard-negative column of its own, the same as masking it out."""
    a, p, n = (torch.tensor(x, dtype=torch.float64) for x in (A, P, N))
    present = n[[0, 2]]
    got = float(hard_negatives_loss(a, p, present, tau=20.0))
    assert got == pytest.approx(_reference(A, P, [N[0], N[2]], 20.0), rel=1e-9)
    # masking view: full [3, 6] logits with the missing column at -inf
    logits = 20.0 * torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(torch.cat([p, n]), dim=-1).T
    logits[:, 3 + 1] = -math.inf
    masked = torch.nn.functional.cross_entropy(logits, torch.arange(3))
    assert got == pytest.approx(float(masked), rel=1e-9)
    # anchor 1 still sees the other positives and both present hard negatives
    assert got != pytest.approx(float(hard_negatives_loss(a, p, n, tau=20.0)))


def test_combined_loss_splits_pair_and_triplet_losses():
    loss = CombinedLoss({"cosent": 1.0, "ibn": 2.0, "angle": 0.5})
    assert loss.pair_losses == ("cosent", "angle") and loss.triplet_losses == ("ibn",)
    a, p, n = (torch.tensor(x, dtype=torch.float32) for x in (A, P, N))
    total, parts = loss.triplets(a, p, n)
    assert set(parts) == {"ibn"}
    assert float(total) == pytest.approx(2.0 * float(hard_negatives_loss(a, p, n, tau=20.0)), rel=1e-6)
    zigzag = torch.stack([a[0], p[0], a[1], p[1], a[2], p[2]])
    _, pair_parts = loss(zigzag, torch.tensor([1.0, 0.0, 1.0]), names=loss.pair_losses)
    assert set(pair_parts) == {"cosent", "angle"}


# ---------------------------------------------------------------------------- the data views


def test_triplet_batch_layout_and_views():
    rows = nli_rows(n_premises=8)
    data = nli_train_data(rows, "drop", "tiny")
    assert isinstance(data, NliTrainData) and isinstance(data.triplets, TripletData)
    assert len(data.pairs) == 8 + 6 and set(data.pairs.labels.tolist()) == {0.0, 1.0}  # neutral dropped
    assert len(data.triplets) == 8 and sum(x is None for x in data.triplets.negative) == 2  # premises 0 and 4
    ids = ([np.array([1, 10 + i]) for i in range(3)], [np.array([2, 20 + i, 5]) for i in range(3)],
           [np.array([3, 30]), None, np.array([3, 32])])
    input_ids, mask = _triplet_batch(np.array([0, 1, 2]), ids, 0, "right", torch.device("cpu"))
    assert input_ids.shape == (3 + 3 + 2, 3)    # anchors, positives, the two present negatives
    assert input_ids[:, 1].tolist() == [10, 11, 12, 20, 21, 22, 30, 32]
    assert mask.sum(dim=1).tolist() == [2, 2, 2, 3, 3, 3, 2, 2]


def test_neutral_setting():
    rows = nli_rows(n_premises=6)
    kept = nli_train_data(rows, 0.5, "tiny").pairs
    assert len(kept) == len(rows) and sorted(set(kept.labels.tolist())) == [0.0, 0.5, 1.0]
    assert RunConfig().nli_neutral == "drop"
    assert RunConfig(nli_neutral=0.25).nli_neutral == 0.25 and RunConfig(nli_neutral="DROP").nli_neutral == "drop"
    for bad in (1.5, "sometimes"):
        with pytest.raises(ConfigError) as err:
            RunConfig(nli_neutral=bad)
        assert err.value.key == "nli_neutral" and "\n" not in str(err.value)
    import argparse

    assert from_arguments(argparse.Namespace(nli_neutral="0.5")).nli_neutral == 0.5
    assert RunConfig(nli_neutral=0.5).to_argv() == ["--nli-neutral", "0.5"]


def test_subsample_keeps_premises_whole():
    rows = nli_rows(n_premises=30)
    sample = subsample_premises(rows, 20, seed=3)
    assert len(sample) <= 20
    counts = rows.groupby("premise").size()
    sizes = sample.groupby("premise").size()
    assert len(sizes) >= 5 and all(sizes[premise] == counts[premise] for premise in sizes.index)
    assert sample.equals(subsample_premises(rows, 20, seed=3)) and subsample_premises(rows, None, 0).equals(rows)


def test_protocol_and_task_go_together():
    with pytest.raises(ConfigError) as err:
        RunConfig(task="nli", protocol="standard")
    assert err.value.key == "protocol"
    with pytest.raises(ConfigError):
        RunConfig(task="sts", protocol="nli-transfer")
    assert RunConfig(protocol="nli-transfer").eval_sets == STS7


# ---------------------------------------------------------------------------- engine, end to end


def test_run_finetune_on_nli_scores_sts_test_sets(tiny_model_dir, tiny_data_dir, nli_tsv):
    from tuner.engine._run import run_finetune

    config = RunConfig(model=str(tiny_model_dir), train=[str(nli_tsv)], eval=["sts12", "sickr"],
                       protocol="nli-transfer", data_dir=str(tiny_data_dir), weights={"cosent": 1, "ibn": 1},
                       batch_size=4, max_seq_length=16)
    out = run_finetune(config, progress=False)
    assert out.config.task == "nli" and out.metric == "spearman"
    # dev: STS-B dev only (loaded for selection though not listed); test: the full files of the eval sets
    assert set(out.scores["dev"]) == {"stsb"} and set(out.scores["test"]) == {"sts12", "sickr"}
    assert out.details["test"]["sts12"]["n"] == 48 and out.details["dev"]["stsb"]["n"] == 48
    assert math.isfinite(out.dev_score) and out.dev_score == out.scores["dev"]["stsb"]
    # 12 premises: 12 entailed + 9 contradicting pairs (neutral dropped) -> 6 steps of 4; triplets cycle
    assert out.train.steps == 6 and set(out.train.loss_parts) == {"cosent", "ibn"}
    assert all(math.isfinite(v) for v in out.train.losses)
    only_ibn = run_finetune(config.replace(weights={"ibn": 1}, eval=["stsb"]), progress=False)
    assert only_ibn.train.steps == 3 and set(only_ibn.scores["test"]) == {"stsb"}  # 12 triplets / 4


def test_nli_eval_dataset_is_a_one_line_error(tiny_model_dir, tiny_data_dir, nli_tsv):
    from tuner.engine._run import evaluate_model, run_finetune

    with pytest.raises(TunerError, match=r"is NLI data .* not scored; evaluate on STS sets") as err:
        evaluate_model(str(tiny_model_dir), [str(nli_tsv)])
    assert "\n" not in str(err.value)
    config = RunConfig(model=str(tiny_model_dir), train=[str(nli_tsv)], eval=[str(nli_tsv)], protocol="nli-transfer",
                       data_dir=str(tiny_data_dir), batch_size=4)
    with pytest.raises(TunerError, match="is NLI data"):
        run_finetune(config, progress=False)
    with pytest.raises(TunerError, match="needs --protocol nli-transfer"):
        run_finetune(config.replace(protocol="standard", eval=["stsb"]), progress=False)


# ---------------------------------------------------------------------------- study files and export


def test_nli_study_files_parse():
    from tuner.study import load_spec

    for name, models in (("nli-grid", 2), ("nli-grid-cpu", 1)):
        spec = load_spec(name)
        assert spec.task == "nli" and spec.protocol == "nli-transfer" and spec.is_grid
        assert len(spec.losses) == 8 and spec.grid_datasets == ["snli"] and spec.transfer_eval == STS7
        assert len(spec.models) == models and spec.n_cells == 8 * models and spec.metric == "spearman"
        assert spec.eval_datasets == []   # loaded as the study's task (nli) before the first trial
        cell = optuna.trial.FixedTrial({"model": spec.models[0], "loss": "cosent+ibn", "dataset": "snli"})
        config = spec.suggest(cell)
        assert config.train == ["snli"] and config.eval == STS7 and config.task == "nli"
    cpu = load_spec("nli-grid-cpu")
    assert cpu.base.max_train_examples == 2000 and cpu.base.epochs == 1 and cpu.base.max_eval_examples is None
    assert cpu.models == ["all-MiniLM-L6-v2"]


def test_nli_study_file_errors(tmp_path):
    from tuner.study import parse_spec

    base = {"task": "nli", "models": ["m"], "sampler": "grid", "data": {"train": ["snli"]}}
    assert parse_spec(base).transfer_eval == STS7
    for change, key in ((({"protocol": "seed"}), "protocol"), ({"data": {"train": ["stsb"]}}, r"data.train\[0\]"),
                        ({"data": {"train": ["snli"], "eval": ["snli"]}}, r"data.eval\[0\]"),
                        ({"data": {"datasets": ["snli"]}}, "data.datasets")):
        with pytest.raises(TunerError, match=f"key '{key}'"):
            parse_spec({**base, **change})


def _nli_cell(number: int, loss: str, dev: float, test: dict) -> optuna.trial.FrozenTrial:
    weights = {name: 1.0 for name in loss.split("+")}
    config = RunConfig(train=["snli"], protocol="nli-transfer", weights=weights)
    attrs = {"model": "m", "loss": loss, "config": config.to_dict(), "task": "nli", "protocol": "nli-transfer",
             "metric": "spearman", "eval_datasets": STS7, "scores.dev.stsb": dev,
             **{f"scores.test.{k}": v for k, v in test.items()}}
    trial = optuna.trial.create_trial(params={"model": "m", "loss": loss, "dataset": "snli"},
                                      distributions={"model": CategoricalDistribution(["m"]),
                                                     "loss": CategoricalDistribution(["cosent", "ibn"]),
                                                     "dataset": CategoricalDistribution(["snli"])},
                                      value=dev, user_attrs=attrs)
    trial.number = number
    return trial


def test_export_matrix_columns_are_the_sts_test_sets(tmp_path):
    from tuner.exporter import build_matrix, export_study

    tests = {name: 0.5 + 0.01 * i for i, name in enumerate(STS7)}
    trials = [_nli_cell(0, "cosent", 0.8, tests), _nli_cell(1, "ibn", 0.7, {k: v + 0.1 for k, v in tests.items()})]
    attrs = {"task": "nli", "metric": "spearman", "protocol": "nli-transfer", "sampler": "grid",
             **{f"zero_shot.m.{k}.test": 0.4 for k in STS7}, "zero_shot.m.stsb.dev": 0.45}
    matrix = build_matrix(trials, attrs)
    assert matrix.datasets == tuple(STS7) and matrix.models == ("m",)
    rows = list(matrix.rows)
    assert matrix.values[0, rows.index("cosent")].tolist() == pytest.approx([tests[k] for k in STS7])
    assert matrix.values[0, rows.index("ibn"), STS7.index("sickr")] == pytest.approx(tests["sickr"] + 0.1)
    assert matrix.values[0, rows.index("zero_shot")].tolist() == pytest.approx([0.4] * 7)
    assert matrix.dev[0, rows.index("cosent"), STS7.index("stsb")] == pytest.approx(0.8)
    study = optuna.create_study(direction="maximize")
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    for trial in trials:
        study.add_trial(trial)
    result = export_study(study, tmp_path / "out", plots=False)
    assert result.shape == (1, len(rows), 7)
    assert "sts12" in (tmp_path / "out" / "results.md").read_text()


@pytest.mark.slow
def test_nli_grid_study_optimizes_and_exports(tmp_path, tiny_model_dir, tiny_data_dir, nli_tsv):
    """``optimize`` (a worker process, the service's input checks) and ``export`` of a tiny task-nli grid."""
    import json
    import subprocess
    import sys

    from _tiny import env_with_repo

    study = tmp_path / "nli-tiny.toml"
    study.write_text(f'''task = "nli"
models = ["{tiny_model_dir}"]
sampler = "grid"
data_dir = "{tiny_data_dir}"
[data]
train = ["{nli_tsv}"]
eval = ["sts12", "stsb", "sickr"]
[train]
batch_size = 4
max_seq_length = 16
nli_neutral = 0.5
[grid]
losses = ["cosent", "cosent+ibn"]
''')
    storage = f"sqlite:///{tmp_path / 'nli.db'}"
    for args in (["optimize", "--study", str(study), "--storage", storage, "--workers", "1", "--no-artifacts",
                  "--no-progress"], ["export", "--study", str(study), "--storage", storage, "--out", str(tmp_path / "o")]):
        run = subprocess.run([sys.executable, "-m", "tuner", *args], cwd=tmp_path, env=env_with_repo(),
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
    matrix = json.loads((tmp_path / "o" / "matrix.json").read_text())
    assert matrix["datasets"] == ["sts12", "stsb", "sickr"] and matrix["protocol"] == "nli-transfer"
    values = np.load(tmp_path / "o" / "matrix.npy")
    rows = matrix["losses"]
    assert np.isfinite(values[0, [rows.index("zero_shot"), rows.index("cosent"), rows.index("cosent+ibn")]]).all()


def test_an_nli_study_checks_its_sts_eval_sets_before_any_trial(tmp_path, tiny_model_dir, tiny_data_dir, nli_tsv):
    from tuner.service._orchestrate import check_inputs
    from tuner.study import load_spec

    study = tmp_path / "nli-check.toml"
    text = f'''task = "nli"
models = ["{tiny_model_dir}"]
sampler = "grid"
data_dir = "{tiny_data_dir}"
[data]
train = ["{nli_tsv}"]
eval = EVAL
[grid]
losses = ["cosent"]
'''
    study.write_text(text.replace("EVAL", '["stsb", "sickr"]'))
    check_inputs(load_spec(study))  # the NLI training set as NLI data, the STS sets as STS data
    study.write_text(text.replace("EVAL", f'["stsb", "{tmp_path / "missing.tsv"}"]'))
    with pytest.raises(TunerError, match="missing.tsv"):
        check_inputs(load_spec(study))
