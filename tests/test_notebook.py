"""docs/quickstart.ipynb runs top to bottom (real model, real data): it must never rot."""
from pathlib import Path

import pytest

pytestmark = [pytest.mark.real, pytest.mark.slow]
NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path, minilm_path, shared_data):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook shows a plot inline"
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", "")) for o in outputs)
    assert "matrix shape" in text
    assert "| test" in text, "the best trial is re-run from its best_finetune.json"
