import json
from pathlib import Path

import pytest
import torch

from tuner.errors import TunerError
from tuner.models._encoder import default_pooling, load_encoder, resolve_model, save_encoder


def test_bundled_minilm_resolves_without_network(minilm_path):
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == minilm_path
    assert resolve_model("all-MiniLM-L6-v2") == minilm_path
    assert default_pooling(minilm_path) == "avg"  # from its 1_Pooling/config.json


def test_model_without_st_config_defaults_to_cls(tiny_model_dir):
    assert default_pooling(str(tiny_model_dir)) == "cls"


def test_bad_model_paths(tmp_path):
    with pytest.raises(TunerError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TunerError, match="not a model folder"):
        resolve_model(str(tmp_path / "empty"))


def test_each_load_is_an_independent_copy(tiny_model_dir):
    a = load_encoder(tiny_model_dir, device="cpu")
    b = load_encoder(tiny_model_dir, device="cpu")
    with torch.no_grad():
        next(a.model.parameters()).add_(1.0)
    assert not torch.equal(next(a.model.parameters()), next(b.model.parameters()))


@pytest.mark.parametrize("pooling", ["cls", "avg", "max", "last", "cls_avg"])
def test_saved_model_loads_in_transformers_and_sentence_transformers(tiny_model_dir, tmp_path, pooling):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from tuner.evaluation import encode

    enc = load_encoder(tiny_model_dir, pooling=pooling, device="cpu")
    out = save_encoder(enc, tmp_path / "out", {"lr": 1e-5, "max_seq_length": 32})
    AutoModel.from_pretrained(out)
    record = json.loads((out / "tuner.json").read_text())
    assert record["pooling"] == pooling and record["lr"] == 1e-5
    assert default_pooling(str(out)) == pooling
    st = SentenceTransformer(str(out), device="cpu")
    texts = ["a man is playing the guitar", "dog runs"]
    ours = encode(enc, texts)
    theirs = st.encode(texts, convert_to_numpy=True)
    assert ours.shape == theirs.shape
    assert abs(ours - theirs).max() < 1e-4


# --- no library noise on load and save (transformers' LOAD REPORT tables, MISSING pooler) ------------
# Run in a subprocess so that what reaches the real stderr is checked, as a user would see it
# (transformers' log handler holds the stderr of its import time, which pytest's capture replaces).

NOISE = ("LOAD REPORT", "UNEXPECTED", "MISSING", "TqdmWarning", "IProgress")

_SCRIPT = r"""
import sys
from pathlib import Path
from transformers.utils import logging as hf_logging
hf_logging.set_verbosity_warning()  # a user's default: warnings on
from tuner.models._encoder import load_encoder, save_encoder
print("=== tuner", file=sys.stderr, flush=True)
enc = load_encoder(sys.argv[1], device="cpu")
out = save_encoder(enc, Path(sys.argv[2]), {"max_seq_length": 32})
assert hf_logging.get_verbosity() == hf_logging.WARNING, "verbosity not restored"
print("=== others", file=sys.stderr, flush=True)
from sentence_transformers import SentenceTransformer
from transformers import AutoModel
AutoModel.from_pretrained(out)
SentenceTransformer(str(out), device="cpu")
print("=== done", file=sys.stderr, flush=True)
"""


def _run_load_save(model: str, out: Path, verbose: bool = False) -> tuple[str, str]:
    """stderr of tuner's load+save, and of transformers/sentence-transformers loading the saved model."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "TUNER_VERBOSE")}
    if verbose:
        env["TUNER_VERBOSE"] = "1"
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(model), str(out)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0 and "=== done" in proc.stderr, proc.stderr[-3000:]
    tuner_part = proc.stderr.split("=== tuner", 1)[1].split("=== others", 1)[0]
    others = proc.stderr.split("=== others", 1)[1]
    return tuner_part, others


def test_load_save_and_reload_print_no_library_noise(tiny_model_dir, tmp_path):
    # the tiny checkpoint has no pooler weights: loading it with a pooler would print a MISSING report
    tuner_part, others = _run_load_save(tiny_model_dir, tmp_path / "saved")
    assert tuner_part.strip() == "", tuner_part[-2000:]
    for word in NOISE:
        assert word not in others, (word, others[-2000:])


def test_verbose_shows_library_chatter(tiny_model_dir, tmp_path):
    """The control for the test above: with TUNER_VERBOSE=1 (tuner --verbose) the same load reports."""
    tuner_part, _ = _run_load_save(tiny_model_dir, tmp_path / "saved", verbose=True)
    assert "LOAD REPORT" in tuner_part and "MISSING" in tuner_part


def test_model_built_without_pooler_is_saved_with_one(tmp_path):
    """build_encoder with add_pooling_layer=False: the saved folder has pooler weights and loads the same."""
    from safetensors import safe_open
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from conftest import make_tiny_model
    from tuner.evaluation import encode
    from tuner.models._encoder import build_encoder

    folder = make_tiny_model(tmp_path / "tiny")
    model = BertModel(BertConfig.from_pretrained(folder), add_pooling_layer=False)
    enc = build_encoder(model, BertTokenizerFast.from_pretrained(folder), pooling="avg")
    out = save_encoder(enc, tmp_path / "saved", {"max_seq_length": 32})
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        assert {"pooler.dense.weight", "pooler.dense.bias"} <= set(weights.keys())
    st = SentenceTransformer(str(out), device="cpu")
    texts = ["a man is playing the guitar", "dog runs"]
    assert abs(encode(enc, texts) - st.encode(texts, convert_to_numpy=True)).max() < 1e-4


@pytest.mark.real
def test_bundled_minilm_loads_and_saves_quietly(minilm_path, tmp_path):
    """The quickstart's symptom: all-MiniLM-L6-v2's pooler weights were reported UNEXPECTED on load."""
    tuner_part, others = _run_load_save(minilm_path, tmp_path / "saved")
    assert tuner_part.strip() == "", tuner_part[-2000:]
    for word in NOISE:
        assert word not in others, (word, others[-2000:])


@pytest.mark.real
def test_notebook_shows_no_library_noise(minilm_path, tmp_path):
    """The quickstart's symptom in a Jupyter kernel: tqdm's 'IProgress not found' warning and the LOAD REPORT."""
    import nbformat
    from nbclient import NotebookClient

    cells = [
        "import pandas as pd, tuner\n"
        "df = pd.DataFrame({'sentence1': ['a man plays a guitar', 'a dog runs', 'a cat sleeps'],\n"
        "                   'sentence2': ['a person plays music', 'a dog is running', 'a car drives'],\n"
        "                   'score': [4.0, 4.5, 0.5]})",
        "scores = tuner.evaluate('all-MiniLM-L6-v2', df)",
        f"enc = tuner.load_encoder('all-MiniLM-L6-v2')\n"
        f"from tuner.models._encoder import save_encoder\n"
        f"out = save_encoder(enc, {str(tmp_path / 'saved')!r}, {{'max_seq_length': 64}})\n"
        f"print('saved')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"], outputs
    streams = [o for o in outputs if o.get("output_type") == "stream"]
    assert [o["text"] for o in streams] == ["saved\n"], streams  # nothing on stderr, no warning
