"""tuner.models._card: every saved model gets a README.md model card (sentence-transformers' layout)
that states the run (base model, data and its shape, losses with weights and temperatures, pooling,
prompt, LoRA), its scores (with the spread over seeds when several ran) and the command that re-runs
it -- and nothing the run did not record."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shlex

import pandas as pd
import pytest
import yaml
from conftest import tiny_sentences

from tuner.cli import build_parser, main
from tuner.config import RunConfig, from_arguments
from tuner.data import load_dataset, protocol_splits
from tuner.models._card import render_card
from tuner.models._encoder import hub_id, load_encoder, save_encoder
from tuner.stats import seed_summary

TINY_RUN = ["--train", "stsb", "--eval", "stsb,sts12", "--weights", "cosent=1,ibn=0.5", "--taus", "cosent=15",
            "--pooling", "avg", "--max-steps", "2", "--batch-size", "8", "--max-seq-length", "16", "--lr", "1e-3",
            "--device", "cpu", "--no-progress", "--json"]


def front_matter(card: str) -> dict:
    """The YAML between the card's opening ``---`` lines, parsed."""
    match = re.match(r"---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def section(card: str, title: str) -> str:
    """The text of ``## title`` up to the next ``## ``."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", card, re.DOTALL | re.MULTILINE)
    return match.group(1) if match else ""


def sts_frame(n: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame({"sentence1": tiny_sentences(n, seed), "sentence2": tiny_sentences(n, seed + 1),
                         "score": [5.0 * i / (n - 1) for i in range(n)]})


def reproduce_argv(card: str) -> list[str]:
    block = re.search(r"```bash\n(.*?)\n```", section(card, "Reproduce"), re.DOTALL)
    assert block, "no reproduce command"
    return shlex.split(block.group(1))


@pytest.fixture(scope="module")
def finetuned(tiny_model_dir, tiny_data_dir, tmp_path_factory):
    """One tiny fine-tune through the real CLI, saved: (its JSON payload, the saved folder)."""
    out = tmp_path_factory.mktemp("card") / "m"
    argv = ["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), *TINY_RUN,
            "--output", str(out)]
    buffer = io.StringIO()  # capsys is per test; this fixture is per module
    with contextlib.redirect_stdout(buffer):
        assert main(argv) == 0
    return json.loads(buffer.getvalue()), out


def test_finetune_writes_a_card_whose_front_matter_is_yaml_with_the_run(finetuned, tiny_data_dir):
    payload, out = finetuned
    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "sentence-transformers" and meta["pipeline_tag"] == "sentence-similarity"
    assert "base_model" not in meta  # a local folder is no hub id: left out, not guessed
    train_rows = len(protocol_splits(load_dataset("stsb", data_dir=tiny_data_dir), "standard")["train"])
    assert f"dataset_size:{train_rows}" in meta["tags"]
    assert {"loss:cosent", "loss:ibn"} <= set(meta["tags"]) and "loss:angle" not in meta["tags"]
    assert meta["metrics"] == ["spearman_cosine"]
    indexed = {(r["dataset"]["type"], r["dataset"]["split"]): r["metrics"][0]["value"]
               for r in meta["model-index"][0]["results"]}
    expected = {(name, split): value for split, per in payload["scores"].items() for name, value in per.items()}
    assert indexed == pytest.approx(expected)


def test_the_card_states_losses_pooling_data_and_scores(finetuned, tiny_model_dir):
    payload, out = finetuned
    card = (out / "README.md").read_text()
    assert f"| Base model | `{tiny_model_dir}` |" in card and "| Pooling | `avg` |" in card
    assert "| Output dimension | 32 |" in card and "| Maximum sequence length | 16 |" in card
    losses = section(card, "Training Details")
    assert "| `cosent` | 1.0 | 15.0 |" in losses and "| `ibn` | 0.5 | 20.0 |" in losses  # ibn: the default tau
    assert "| Steps run | 2 |" in losses and "| Learning rate | 0.001 |" in losses
    scores = section(card, "Evaluation")
    for split, per in payload["scores"].items():
        for name, value in per.items():
            assert re.search(rf"\| {split} \| {name} \| \d+ \| {value * 100:.2f} \|", scores), (split, name)
    assert "SentenceTransformer(" in section(card, "Usage") and "tuner.load_encoder(" in section(card, "Usage")


def test_the_reproduce_command_parses_back_to_the_same_run(finetuned):
    payload, out = finetuned
    argv = reproduce_argv((out / "README.md").read_text())
    assert argv[:4] == ["python", "-m", "tuner", "finetune"]
    args = build_parser().parse_args(argv[3:])
    assert from_arguments(args) == RunConfig.from_dict(payload["config"])
    assert args.output == str(out)
    saved = json.loads((out / "tuner.json").read_text())
    assert shlex.join(argv) == saved["command"] == payload["command"]  # one command, in the record and the card


def test_a_model_saved_without_a_run_gets_a_card_with_nothing_invented(tiny_model_dir, tmp_path):
    out = save_encoder(load_encoder(str(tiny_model_dir), pooling="cls_avg", device="cpu"), tmp_path / "bare",
                       {"max_seq_length": 32})
    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert set(meta) == {"library_name", "pipeline_tag", "tags"}  # no base_model, metrics, model-index
    assert not any(tag.startswith(("dataset_size:", "loss:")) for tag in meta["tags"])
    for absent in ("## Training Details", "## Evaluation", "## Reproduce", "| Prompt |", "| LoRA |", "seed"):
        assert absent not in card
    assert "| Pooling | `cls_avg` |" in card and "| Maximum sequence length | 32 |" in card
    assert "| Output dimension | 32 |" in card  # cls_avg's Dense (2 x 32 -> 32) sets the width


def test_in_memory_data_has_scores_but_no_command(tiny_model_dir, tmp_path):
    import tuner

    run = tuner.finetune(str(tiny_model_dir), train=sts_frame(40, 0), eval=sts_frame(40, 5), weights={"angle": 1},
                         max_steps=1, batch_size=8, max_seq_length=16, device="cpu", progress=False,
                         output=tmp_path / "m")
    card = (run.output / "README.md").read_text()
    assert "## Reproduce" not in card  # no command line names a DataFrame
    assert f"{run.scores['test']['dataframe'] * 100:.2f}" in section(card, "Evaluation")
    assert "| `angle` | 1.0 | 1.0 |" in card
    assert "--datasets <DataFrame>" not in card


def test_several_seeds_save_one_model_each_with_the_interval_over_them(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                       capsys):
    out = tmp_path / "seeds"
    argv = ["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), *TINY_RUN,
            "--seeds", "1,2,3", "--output", str(out)]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    tests = [payload["scores_by_seed"][s]["test"]["stsb"] for s in ("1", "2", "3")]
    stats = seed_summary(tests)
    for seed in (1, 2, 3):
        folder = out / f"seed-{seed}"
        card = (folder / "README.md").read_text()
        assert payload["outputs"][str(seed)] == str(folder)
        row = re.search(r"^\| test \| stsb \| (\S+) \| (\S+) \| \[(\S+), (\S+)\] \| 3 \|$", card, re.MULTILINE)
        assert row, card
        shown = [float(x) for x in row.groups()]
        assert shown == pytest.approx([stats["mean"] * 100, stats["std"] * 100, stats["ci_low"] * 100,
                                       stats["ci_high"] * 100], abs=0.006)
        argv_seed = reproduce_argv(card)
        config = from_arguments(build_parser().parse_args(argv_seed[3:]))
        assert config.seed == seed and f"--output {folder}" in shlex.join(argv_seed)
        assert payload["command"] in card  # the command of all the seeds


def test_prompt_and_lora_are_stated_and_only_expressible_prompts_go_to_sentence_transformers():
    record = {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "base_hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
              "pooling": "last", "prompt": 'This sentence : "{text}" means in one word:"',
              "config": {"lora_r": 8, "lora_alpha": None, "lora_dropout": 0.0, "lora_targets": ["q_proj", "v_proj"],
                         "train": ["stsb"]}}
    card = render_card(record, {"dim": 576, "modules": True, "st_prompt": False, "adapter": True}, "out")
    assert front_matter(card)["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "| LoRA | rank 8, alpha 8, dropout 0.0, targets q_proj, v_proj;" in card  # alpha: the rank when unset
    assert "means in one word" in card and "cannot apply" in section(card, "Usage")
    bare = render_card({"pooling": 3}, {"dim": 32, "modules": False}, "out")
    assert front_matter(bare)["library_name"] == "transformers"
    assert "SentenceTransformer(" not in bare and "no sentence-transformers equivalent" in bare


def test_unscored_values_are_left_out():
    record = {"pooling": "avg", "metric": "spearman", "scores": {"test": {"stsb": None}}, "config": {"train": ["stsb"]}}
    card = render_card(record, {"dim": 32, "modules": True}, "out")
    assert "metrics" not in front_matter(card) and "## Evaluation" not in card


@pytest.mark.parametrize("name,expected", [
    ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
    ("sentence-transformers/all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"),
    ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ("BAAI/bge-small-en-v1.5", "BAAI/bge-small-en-v1.5"),
    ("./models/mine", None),
])
def test_hub_id_of_a_base_model(name, expected):
    assert hub_id(name) == expected


def test_hub_id_of_a_local_folder_is_none(tiny_model_dir):
    assert hub_id(str(tiny_model_dir)) is None
