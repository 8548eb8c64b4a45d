"""The model card: ``README.md`` beside every saved model, in sentence-transformers' layout.

A card is rendered from the saved folder alone: ``tuner.json`` (the run record
:func:`tuner.models._encoder.save_encoder` writes: base model, pooling, prompt, the run config, the
losses with their weights and temperatures, the data's shape, the scores, the command that re-runs it)
and the files beside it (``config.json``'s width, whether ``modules.json``, the sentence-transformers
prompt or a LoRA ``adapter/`` were written). So the card and ``tuner.json`` never disagree, and a
card can be written again later with what only the caller knows (the scores of the other seeds of a
``finetune --seeds`` run, :func:`write_card`'s ``seed_scores``).

The layout follows the cards sentence-transformers writes (YAML front matter with
``library_name``, ``pipeline_tag: sentence-similarity``, ``base_model``, tags, metrics and a
``model-index``; then Model Details, Usage, Training Details, Evaluation), so the hub and readers
find things where they expect them. A value the record does not hold is left out, never guessed:
a model saved without scores has no Evaluation section and no metrics, one saved from in-memory
data has no reproduce command.
"""
from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from tuner.models._lora import ADAPTER_DIR, LoraSettings
from tuner.stats import seed_summary

CARD_FILE = "README.md"
#: Our metric names -> the names sentence-transformers' evaluators give them (cosine similarity).
_ST_METRIC = {"spearman": "spearman_cosine", "pearson": "pearson_cosine", "ndcg@10": "cosine_ndcg@10"}
_TASK_TYPE = {"sts": ("semantic-similarity", "Semantic Similarity"), "nli": ("semantic-similarity", "Semantic Similarity"),
              "classification": ("text-classification", "Text Classification"),
              "retrieval": ("information-retrieval", "Information Retrieval")}
_VERSIONED = ("tuner", "torch", "transformers", "sentence-transformers", "peft")


def write_card(folder: str | Path, seed_scores: Mapping[int, Mapping[str, Mapping[str, float]]] | None = None,
               seeds_command: str | None = None) -> Path:
    """Write ``folder/README.md`` from the folder's ``tuner.json`` and files; returns its path.

    ``seed_scores`` (``{seed: {split: {dataset: score}}}``, this model's seed among them) adds the
    spread over the seeds (:func:`tuner.stats.seed_summary`: mean, std, 95% t-interval) and
    ``seeds_command`` the command that ran them all.
    """
    out = Path(folder)
    record = json.loads((out / "tuner.json").read_text())
    files = {"dim": _width(out, record), "modules": (out / "modules.json").is_file(),
             "st_prompt": (out / "config_sentence_transformers.json").is_file(),
             "adapter": (out / ADAPTER_DIR).is_dir()}
    path = out / CARD_FILE
    path.write_text(render_card(record, files, str(out), seed_scores=seed_scores, seeds_command=seeds_command))
    return path


def render_card(record: Mapping[str, Any], files: Mapping[str, Any], location: str, *,
                seed_scores: Mapping[int, Mapping[str, Mapping[str, float]]] | None = None,
                seeds_command: str | None = None) -> str:
    """The card's text: front matter, then one section per part the record holds."""
    summary = _seed_table(record, seed_scores) if seed_scores and len(seed_scores) > 1 else []
    parts = [_front_matter(record, files), _intro(record, files), _details(record, files),
             _usage(record, files, location), _training(record), _evaluation(record),
             summary, _reproduce(record, seeds_command if summary else None), _versions(files)]
    return "\n".join(line for part in parts if part for line in [*part, ""]).rstrip() + "\n"


def _width(folder: Path, record: Mapping[str, Any]) -> int | None:
    """The embedding's width: the last Dense module's output (``modules.json``, or the ``post_modules``
    tuner.json lists), else the transformer's hidden size."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        modules = []
    entries = [m for m in [*(modules if isinstance(modules, list) else []), *(record.get("post_modules") or [])]
               if isinstance(m, Mapping)]
    dense = [m for m in entries if str(m.get("type", "")).endswith("Dense")]
    for name, key in ([(str(dense[-1].get("path")), "out_features")] if dense else []) + [("", "hidden_size")]:
        try:
            value = json.loads((folder / name / "config.json").read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int):
            return value
    return None


def _config(record: Mapping[str, Any]) -> Mapping[str, Any]:
    config = record.get("config")
    return config if isinstance(config, Mapping) else {}


def _scores(record: Mapping[str, Any]) -> list[tuple[str, str, float]]:
    """(split, dataset, score) of every finite score the record holds."""
    scores = record.get("scores")
    if not isinstance(scores, Mapping):
        return []
    return [(split, name, float(value)) for split, per in scores.items() if isinstance(per, Mapping)
            for name, value in per.items() if isinstance(value, (int, float))]


def _title(record: Mapping[str, Any]) -> str:
    base = str(record.get("base_model", "a model")).rstrip("/").split("/")[-1]
    losses = record.get("losses")
    return f"{base} fine-tuned with tuner" + (f" ({'+'.join(losses)})" if losses else "")


def _front_matter(record: Mapping[str, Any], files: Mapping[str, Any]) -> list[str]:
    meta: dict[str, Any] = {"library_name": "sentence-transformers" if files.get("modules") else "transformers",
                            "pipeline_tag": "sentence-similarity"}
    if record.get("base_hub_id"):
        meta["base_model"] = record["base_hub_id"]
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "tuner"]
    if isinstance(record.get("train_pairs"), int):
        tags.append(f"dataset_size:{record['train_pairs']}")
    tags += [f"loss:{name}" for name in record.get("losses") or {}]
    meta["tags"] = tags
    metric = record.get("metric")
    scores = _scores(record)
    if scores and metric:
        name = _ST_METRIC.get(metric, metric)
        meta["metrics"] = [name]
        kind, label = _TASK_TYPE.get(str(record.get("task")), _TASK_TYPE["sts"])
        meta["model-index"] = [{"name": _title(record), "results": [
            {"task": {"type": kind, "name": label},
             "dataset": {"name": f"{dataset} ({split})", "type": dataset, "split": split},
             "metrics": [{"type": name, "value": value, "name": f"{metric} ({split})"}]}
            for split, dataset, value in scores]}]
    return ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---"]


def _intro(record: Mapping[str, Any], files: Mapping[str, Any]) -> list[str]:
    kind = "a [sentence-transformers](https://www.sbert.net) model" if files.get("modules") else "a transformers model"
    base = record.get("base_model")
    text = f"This is {kind} fine-tuned" + (f" from `{base}`" if base else "") + " by tuner"
    train = _config(record).get("train")
    if train:
        text += f" on {', '.join(f'`{name}`' for name in train)}"
    if files.get("dim"):
        text += f". It maps sentences to a {files['dim']}-dimensional vector; compare two with cosine similarity"
    return [f"# {_title(record)}", "", text + "."]


def _rows(rows: list[tuple[str, Any]]) -> list[str]:
    """A two-column Markdown table of the rows whose value is known."""
    kept = [(key, value) for key, value in rows if value not in (None, "", [], {})]
    return ["| | |", "| --- | --- |", *(f"| {key} | {value} |" for key, value in kept)] if kept else []


def _details(record: Mapping[str, Any], files: Mapping[str, Any]) -> list[str]:
    config = _config(record)
    lora = None
    if files.get("adapter") or (config.get("lora_r") or 0) > 0:
        settings = LoraSettings(config.get("lora_r") or 0, config.get("lora_alpha"), config.get("lora_dropout") or 0.0,
                                tuple(config.get("lora_targets") or ()))
        lora = (f"rank {settings.r}, alpha {settings.alpha}, dropout {settings.dropout}, targets "
                f"{', '.join(settings.targets) or 'every linear layer'}; the adapter is in "
                f"`{ADAPTER_DIR}/`, the folder's weights are merged")
    prompt = record.get("prompt")
    return ["## Model Details", "", *_rows([
        ("Base model", f"`{record['base_model']}`" if record.get("base_model") else None),
        ("Output dimension", files.get("dim")),
        ("Pooling", f"`{record['pooling']}`" if record.get("pooling") is not None else None),
        ("Maximum sequence length", config.get("max_seq_length", record.get("max_seq_length"))),
        ("Prompt", f"`{json.dumps(prompt)}`" if prompt else None),
        ("LoRA", lora),
        ("Similarity", "cosine"),
    ])]


def _usage(record: Mapping[str, Any], files: Mapping[str, Any], location: str) -> list[str]:
    lines = ["## Usage", ""]
    prompt = record.get("prompt")
    if files.get("modules"):
        note = []
        if prompt and files.get("st_prompt"):
            note = ["", "sentence-transformers puts the prompt before every sentence by default (prompt name `tuner`)."]
        elif prompt:
            note = ["", ("The prompt has words after the sentence, which sentence-transformers cannot apply: "
                        "load the model with tuner to encode as it was trained.")]
        lines += ["### sentence-transformers", "", "```python", "from sentence_transformers import SentenceTransformer",
                  "", f"model = SentenceTransformer({location!r})",
                  'embeddings = model.encode(["A man is playing a guitar.", "Someone plays an instrument."])',
                  "print(model.similarity(embeddings, embeddings))", "```", *note, ""]
    else:
        lines += [(f"Pooling `{record.get('pooling')}` has no sentence-transformers equivalent: load the model with "
                  "tuner, which applies it."), ""]
    named = [n for n in _config(record).get("eval") or _config(record).get("train") or [] if not n.startswith("<")]
    datasets = ",".join(named or ["stsb"])  # sets given as DataFrames have no name to score by
    lines += ["### tuner", "", "```python", "import tuner", "", f"encoder = tuner.load_encoder({location!r})",
              f"print(tuner.evaluate(encoder, {datasets!r}))", "```", "", "```bash",
              f"python -m tuner evaluate --model {location} --datasets {datasets}", "```"]
    return lines


def _training(record: Mapping[str, Any]) -> list[str]:
    config = _config(record)
    if not config:
        return []
    lines = ["## Training Details", "", "### Data", "", *_rows([
        ("Training sets", ", ".join(f"`{n}`" for n in config.get("train") or [])),
        ("Scored sets", ", ".join(f"`{n}`" for n in record.get("eval") or [])),
        ("Task", record.get("task", config.get("task"))),
        ("Protocol (splits)", config.get("protocol")),
        ("Training pairs", record.get("train_pairs")),
        ("Training subsample", config.get("max_train_examples")),
        ("Dev/test subsample", config.get("max_eval_examples")),
    ])]
    losses = record.get("losses")
    if losses:
        lines += ["", "### Loss", "", "Total loss = the sum of weight x loss over these losses:", "",
                  "| loss | weight | temperature |", "| --- | --- | --- |",
                  *(f"| `{name}` | {spec.get('weight')} | {spec.get('tau', '-')} |" for name, spec in losses.items())]
    lines += ["", "### Hyperparameters", "", *_rows([
        ("Epochs", config.get("epochs")), ("Maximum steps", config.get("max_steps")),
        ("Steps run", record.get("steps")), ("Batch size", config.get("batch_size")),
        ("Learning rate", config.get("lr")), ("Warmup ratio", config.get("warmup_ratio")),
        ("Weight decay", config.get("weight_decay")), ("Precision", config.get("precision")),
        ("Seed", config.get("seed")),
    ])]
    lines += ["", "<details><summary>Every run setting (tuner's <code>RunConfig</code>)</summary>", "", "```json",
              json.dumps(config, indent=2, sort_keys=True), "```", "", "</details>"]
    return lines


def _evaluation(record: Mapping[str, Any]) -> list[str]:
    scores = _scores(record)
    if not scores:
        return []
    metric = record.get("metric", "score")
    rows = record.get("eval_rows") if isinstance(record.get("eval_rows"), Mapping) else {}
    return ["## Evaluation", "", f"{metric} x 100 of this model, after training:", "",
            "| split | dataset | rows | " + metric + " |", "| --- | --- | --- | --- |",
            *(f"| {split} | {name} | {rows.get(split, {}).get(name, '-')} | {value * 100:.2f} |"
              for split, name, value in scores)]


def _seed_table(record: Mapping[str, Any], seed_scores: Mapping[int, Mapping[str, Mapping[str, float]]]) -> list[str]:
    """Mean, std and the 95% t-interval over the seeds of the recipe, per split and dataset."""
    metric = record.get("metric", "score")
    seeds = sorted(seed_scores)
    mine = _config(record).get("seed")
    lines = ["### Across seeds", "",
             (f"The same recipe run with seeds {', '.join(map(str, seeds))} (this model: seed {mine}); {metric} x 100, "
             "mean ± sample std and the two-sided 95% Student-t interval over the seeds:"), "",
             "| split | dataset | mean | std | 95% interval | seeds |", "| --- | --- | --- | --- | --- | --- |"]
    for split, name, _ in _scores(record):
        stats = seed_summary([seed_scores[s].get(split, {}).get(name) for s in seeds])
        if stats["mean"] is None:
            continue
        std = f"{stats['std'] * 100:.2f}" if stats["std"] is not None else "-"
        interval = (f"[{stats['ci_low'] * 100:.2f}, {stats['ci_high'] * 100:.2f}]"
                    if stats["ci_low"] is not None else "-")
        lines.append(f"| {split} | {name} | {stats['mean'] * 100:.2f} | {std} | {interval} | {stats['n']} |")
    return lines


def _reproduce(record: Mapping[str, Any], seeds_command: str | None) -> list[str]:
    command = record.get("command")
    if not command:
        return []
    lines = ["## Reproduce", "", "```bash", command, "```"]
    if seeds_command:
        lines += ["", "Every seed of the table above:", "", "```bash", seeds_command, "```"]
    return lines


def _versions(files: Mapping[str, Any]) -> list[str]:
    found = [("Python", platform.python_version())]
    for name in _VERSIONED:
        if name == "peft" and not files.get("adapter"):
            continue
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return ["## Framework Versions", "", *(f"- {name}: {version}" for name, version in found)]
