"""scripts/readme_tables.py: the result tables of README.md and docs/*.md are the committed records, rendered."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_tables", REPO / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_repo(tables: ModuleType, dest: Path) -> Path:
    """README.md, docs/*.md and every record one of their generated blocks names, under ``dest``."""
    text = ""
    for page in tables.pages(REPO):
        (dest / page.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(page, dest / page.relative_to(REPO))
        text += page.read_text()
    for match in tables.BLOCK.finditer(text):
        source = REPO / match.group(3)
        if source.is_dir():
            shutil.copytree(source, dest / match.group(3), ignore=shutil.ignore_patterns("plots"),
                            dirs_exist_ok=True)  # several blocks may read one export
        else:
            (dest / match.group(3)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, dest / match.group(3))
    return dest


def page_texts(tables: ModuleType, root: Path) -> dict[str, str]:
    return {page.relative_to(root).as_posix(): page.read_text() for page in tables.pages(root)}


def test_readme_is_in_sync_with_the_records(tables: ModuleType, capsys) -> None:
    kinds = [m.group(2) for text in page_texts(tables, REPO).values() for m in tables.BLOCK.finditer(text)]
    assert {"matrix", "combinations", "rerun"} <= set(kinds)
    assert tables.main(["--check"]) == 0, capsys.readouterr().err


def test_check_covers_the_docs_pages(tables: ModuleType, tmp_path: Path, capsys) -> None:
    names = [page.relative_to(REPO).as_posix() for page in tables.pages(REPO)]
    assert names[0] == "README.md" and "docs/results.md" in names
    assert tables.BLOCK.search((REPO / "docs/results.md").read_text())     # the results tables live there now
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# front door, no tables\n")
    (tmp_path / "table.md").write_text("| a |\n| --- |\n| 1 |\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text("intro\n\n<!-- generated: include table.md -->\n| stale |\n<!-- end generated -->\n\nafter\n")
    assert tables.main(["--check", "--root", str(tmp_path)]) == 1
    assert "docs/page.md: generated block 'include table.md' is stale" in capsys.readouterr().err
    assert "| stale |" in page.read_text()                                  # --check changes nothing
    assert tables.main(["--root", str(tmp_path)]) == 0
    assert page.read_text() == ("intro\n\n<!-- generated: include table.md -->\n| a |\n| --- |\n| 1 |\n"
                                "<!-- end generated -->\n\nafter\n")
    assert (tmp_path / "README.md").read_text() == "# front door, no tables\n"
    assert tables.main(["--check", "--root", str(tmp_path)]) == 0


def test_a_changed_record_makes_check_fail_and_a_rewrite_fixes_it(tables: ModuleType, tmp_path: Path,
                                                                   capsys) -> None:
    root = copy_repo(tables, tmp_path)
    assert tables.main(["--check", "--root", str(root)]) == 0
    record_path = root / "docs/results/sts-cpu/best_rerun.json"
    record = json.loads(record_path.read_text())
    record["runs"]["43"]["dev"] = 0.912345
    record_path.write_text(json.dumps(record))
    before = page_texts(tables, root)
    page = next(name for name, text in before.items() if "rerun docs/results/sts-cpu/best_rerun.json" in text)
    assert tables.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "rerun docs/results/sts-cpu/best_rerun.json" in err and "matrix" not in err
    assert page_texts(tables, root) == before                       # --check changes nothing
    assert tables.main(["--root", str(root)]) == 0
    after = page_texts(tables, root)
    assert "| 43 | 91.23 | 84.68 | 76 | 364 s |" in after[page] and after[page].count("\n") == before[page].count("\n")
    assert {name: text for name, text in after.items() if name != page} == \
        {name: text for name, text in before.items() if name != page}   # only the page with the block changes
    assert tables.main(["--check", "--root", str(root)]) == 0


def test_matrix_with_repeats_shows_the_interval_and_the_exporters_marks(tables: ModuleType, tmp_path: Path) -> None:
    from test_export_repeats import repeats_study

    from tuner.exporter import export_study

    export_study(repeats_study(), tmp_path, plots=False)
    lines = tables.render_matrix(tmp_path)
    # half-widths of the 95% t-interval over 3 seeds: t(0.975, 2) * std / sqrt(3) = 2.4841 * (100 std)
    assert lines[:6] == [
        "| Loss | stsb | sickr | Mean |",
        "|---|---:|---:|---:|",
        "| Without Fine-Tuning | 60.00 | 55.00 | 57.50 |",
        "| Default Cosine Similarity | 70.00 ± 2.48 | **75.00 ± 2.48** | **72.50** |",
        "| CoSENT | **82.00 ± 4.97** | 61.00 ± 2.48 | 71.50 |",
        "| Angle | 52.00 ± 4.97 | **75.00 ± 0.00** | 63.50 |",
    ]
    results_md = (tmp_path / "results.md").read_text()
    assert lines[-1] in results_md and lines[-1].startswith("Significant wins") and "CoSENT 1/2 (stsb)" in lines[-1]


def test_gains_show_the_bootstrap_interval_and_count_significant_rows(tables: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(REPO / "docs/results/sts-grid-cpu-disjoint-r3", folder, ignore=shutil.ignore_patterns("plots"))
    meta = json.loads((folder / "matrix.json").read_text())
    cell = next(c for c in meta["cells_detail"] if c["loss"] == "cosent" and c["dataset"] == "sts12")
    cell["vs_zero_shot"] = {"difference": -0.0123, "ci95": [-0.02, -0.004]}          # a significant loss
    other = next(c for c in meta["cells_detail"] if c["loss"] == "angle" and c["dataset"] == "sts12")
    other["vs_zero_shot"] = {"difference": 0.001, "ci95": [-0.003, 0.005]}          # inside the noise
    (folder / "matrix.json").write_text(json.dumps(meta))
    lines = tables.render_gains(folder)
    cosent = next(line for line in lines if line.startswith("| CoSENT |"))
    assert cosent.split(" | ")[1] == "**-1.23 [-2.00, -0.40]**"
    angle = next(line for line in lines if line.startswith("| Angle |"))
    assert angle.split(" | ")[1] == "+0.10 [-0.30, +0.50]"
    helps = sum(1 for c in meta["cells_detail"] if c["dataset"] == "sts12" and c.get("vs_zero_shot")
                and c["vs_zero_shot"]["ci95"][0] > 0)
    assert f"sts12 {helps}/1" in lines[-1]


def test_models_side_by_side_means_and_gains_over_each_models_zero_shot(tables: ModuleType, tmp_path: Path) -> None:
    import numpy as np

    values = np.array([[[0.70, 0.72], [0.75, 0.77], [np.nan, np.nan]],      # model a: zero-shot, cosent, ibn
                       [[0.80, 0.80], [0.79, 0.83], [0.90, np.nan]]])     # model b
    np.save(tmp_path / "matrix.npy", values)
    (tmp_path / "matrix.json").write_text(json.dumps({
        "models": ["a", "b"], "losses": ["zero_shot", "cosent", "ibn"],
        "loss_titles": ["Without Fine-Tuning", "CoSENT", "In-Batch Negatives"], "datasets": ["x", "y"]}))
    lines = tables.render_models(tmp_path)
    assert lines[0] == "| Loss | a mean | gain | b mean | gain |"
    assert lines[2] == "| Without Fine-Tuning | 71.00 |  | 80.00 |  |"
    assert lines[3] == "| CoSENT | **76.00** | +5.00 | 81.00 | +1.00 |"
    assert lines[4] == "| In-Batch Negatives | n/a |  | **90.00** | +10.00 |"   # mean over the scored dataset


def test_matrix_applies_holm_to_the_p_values_an_older_record_holds(tables: ModuleType) -> None:
    """nli-grid-cpu's matrix.json was written under the uncorrected one-sided rule; its two-sided p-values
    under Holm over each column make sts14 and sts15 ties, and one seed per cell makes it exploratory."""
    folder = REPO / "docs/results/nli-grid-cpu"
    meta = json.loads((folder / "matrix.json").read_text())
    assert "exploratory" not in meta["significance"]                  # the record predates the rule
    lines = tables.render_matrix(folder)
    assert lines[-1].endswith("one training seed per cell, so over test items only: exploratory): "
                              "IBN+Angle 3/7 (sts13, sts16, stsb); CoSENT+IBN 1/7 (sts12).")
    sts15 = meta["datasets"].index("sts15") + 1
    bold = [line.split(" | ")[0].lstrip("| ") for line in lines[2:11] if line.split(" | ")[sts15].startswith("**")]
    assert bold == ["CoSENT+IBN", "IBN+Angle", "CoSENT+IBN+Angle"]      # p 0.067 and 0.046 -> Holm 0.092: ties


def test_rerun_gain_is_rounded_from_the_unrounded_scores(tables: ModuleType) -> None:
    """sts-lora-cpu: 70.3035 - 66.4275 = +3.876, shown +3.88 (the hand-written table had 70.30 - 66.43 = +3.87)."""
    lines = tables.render_rerun_gain(REPO / "docs/results/sts-lora-cpu")
    assert lines[-1] == "| stsb test (n=1,379) | 66.43 | 70.30 | +3.88 |"
