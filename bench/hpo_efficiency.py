"""How much compute each search strategy spends before it finds a configuration as good as the best
(issue #16): anytime performance of Optuna samplers and pruners on the real fine-tune objective.

Every strategy searches the same space -- which losses are on (cos-MSE, CoSENT, in-batch
negatives, AnglE; at least one), their weights and taus, pooling (cls/avg) and lr -- with the same
real objective: a fine-tune of ``--model`` (default all-MiniLM-L6-v2) on ``--train-pairs`` STS-B
training pairs for 1 epoch, scored on the full official dev (the objective) and test files
(``--eval-pairs N``: a stratified sample instead). Strategies (each a real study in ``--storage``,
``--workers`` worker processes, ``--n-trials`` trials, ``--runs`` independent runs; the training
seed is 42 in every trial, so a configuration scores the same in every run). Each run of each
strategy has a sampler seed of its own (:func:`sampler_seed`): no two runs share a random stream,
so strategies built on the same sampler do not draw the same first trials:

* ``random``             RandomSampler
* ``tpe``                TPE, univariate (Optuna's default TPE), constant liar for parallel workers
* ``tpe-mv``             TPE multivariate + group (the conditional on/off space), constant liar
* ``tpe-mv-median``      tpe-mv + MedianPruner on the intermediate dev scores (``--eval-every`` steps)
* ``tpe-mv-hyperband``   tpe-mv + HyperbandPruner: training steps as the fidelity (multi-fidelity)
* ``tpe-mv-warm``        tpe-mv whose first trials are the best ``--warm-k`` of a quick study
                         (same space, ``--quick-pairs`` training pairs, ``--quick-trials`` trials of
                         tpe-mv); its compute is reported with and without the quick study's
* ``grid``               the exhaustive baseline on the discretised space: the 15 loss
                         combinations x pooling (cls, avg) at weight 1, the seed's taus, the base lr;
                         run once (it has no sampler seed)

Compute is the trials' CPU seconds (``cpu_s``, recorded by every trial; steadier than wall time on a
shared machine), summed in the order trials finished. **Noise**: the grid's best cell is re-run with
``--noise-seeds`` other training seeds; the std of its dev score over them is the seed noise σ. A
target is a best dev score minus ``--target-sigmas`` σ (a run closer than that to the best is
within what a training seed changes; without a noise run: ``--target-gap``). Printed and written
(``--out`` .json/.md/.png):
per strategy the compute to reach the target as a fraction of the grid's total compute (mean over
the seeds that reached it, and how many did), the final best dev score and the test score of that
trial; the anytime curves (best dev so far against compute) with their seed bands.

    python bench/hpo_efficiency.py                        # everything (several CPU-hours: run it in parts)
    python bench/hpo_efficiency.py --strategies grid,tpe-mv --runs 0
    python bench/hpo_efficiency.py --analyse-only         # tables and plot from the storage
    python bench/hpo_efficiency.py --strategies random,tpe,tpe-mv,tpe-mv-median,tpe-mv-hyperband,tpe-mv-warm \
        --runs 5 --merge bench/results/hpo_efficiency.json   # one more run beside the recorded ones
Every run is resumable: a finished study is read, not re-run (the storage is the record: commit it after
``--drop-items``, which keeps it small; a later session resumes from it). ``--merge FILE`` keeps the runs a
previous ``--out`` JSON recorded (the storage may be gone) for the strategies and seeds that the
storage lacks; it refuses a file whose budget settings differ.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import zlib
from pathlib import Path
from typing import Any, Optional

import common  # noqa: F401  (quiet, offline environment; repo on sys.path)
from common import note

STRATEGIES = ("random", "tpe", "tpe-mv", "tpe-mv-median", "tpe-mv-hyperband", "tpe-mv-warm", "grid")
SAMPLERS: dict[str, Any] = {
    "random": "random",
    "tpe": {"type": "tpe", "multivariate": False, "group": False, "constant_liar": True},
    "tpe-mv": {"type": "tpe", "multivariate": True, "group": True, "constant_liar": True},
}


def base_study(args: argparse.Namespace) -> dict[str, Any]:
    """The search study every sampler strategy runs (a study dict, as read from TOML)."""
    from tuner.losses.registry import loss_names

    search: dict[str, Any] = {"losses": "any", **{f"w_{loss}": [0.1, 1.0] for loss in loss_names()},
                              "tau_cosent": [5.0, 50.0], "tau_ibn": [5.0, 50.0], "tau_angle": [0.5, 5.0],
                              "pooling": ["cls", "avg"], "lr": [1e-5, 2e-4]}
    return {"description": "bench/hpo_efficiency.py", "task": "sts", "models": [args.model],
            "protocol": "standard", "sampler": "tpe", "pruner": "none", "n_trials": args.n_trials, "seed": 0,
            "max_retries": 1, "data": {"train": ["stsb"], "eval": ["stsb"]},
            "budget": {"epochs": 1, "max_train_examples": args.train_pairs,
                       **({"max_eval_examples": args.eval_pairs} if args.eval_pairs else {})},
            "train": {"batch_size": args.batch_size, "lr": args.lr, "max_seq_length": 64, "seed": 42},
            "search": search, **({"data_dir": args.data_dir} if args.data_dir else {})}


def sampler_seed(strategy: str, run: int) -> int:
    """The sampler seed of run ``run`` of ``strategy``: its own for every (strategy, run), so no two
    runs share a random stream (tpe-mv-median and tpe-mv share a sampler, not its draws)."""
    return zlib.crc32(f"{strategy}/{run}".encode()) % 2**31


def study_dicts(strategy: str, run: int, args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """The studies (name, dict) run ``run`` of a strategy runs, in order (tpe-mv-warm: the quick one first)."""
    base = base_study(args)
    if strategy == "grid":
        grid = {k: v for k, v in base.items() if k not in ("search", "n_trials", "data")}
        from tuner.losses.registry import all_combinations

        grid.update(sampler="grid", data={"datasets": ["stsb"]}, seed=42,
                    grid={"losses": args.grid_losses.split(",") if args.grid_losses else list(all_combinations()),
                          "pooling": ["cls", "avg"]})
        return [(f"{args.prefix}-grid", grid)]
    study = copy.deepcopy(base)
    study["seed"] = sampler_seed(strategy, run)
    study["sampler"] = SAMPLERS["tpe-mv" if strategy.startswith("tpe-mv") else strategy]
    if strategy == "tpe-mv-median":
        study["pruner"] = {"type": "median", "n_startup_trials": args.pruner_startup}
        study["budget"]["eval_every"] = args.eval_every
    if strategy == "tpe-mv-hyperband":
        study["pruner"] = {"type": "hyperband", "min_resource": args.eval_every, "reduction_factor": 3}
        study["budget"]["eval_every"] = args.eval_every
    out = []
    if strategy == "tpe-mv-warm":
        quick = copy.deepcopy(study)
        quick["n_trials"] = args.quick_trials
        quick["budget"]["max_train_examples"] = args.quick_pairs
        out.append((f"{args.prefix}-quick-r{run}", quick))
        study["warm_start"] = {"study": f"{args.prefix}-quick-r{run}", "k": args.warm_k}
    out.append((f"{args.prefix}-{strategy}-r{run}", study))
    return out


def noise_study(best_grid_trial: Any, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The grid's best cell again with ``--noise-seeds`` training seeds 43, 44, ... (the grid ran 42)."""
    grid = study_dicts("grid", 0, args)[0][1]
    cell = {"losses": [best_grid_trial.params["loss"]],
            "pooling": [best_grid_trial.params.get("pooling", grid["grid"]["pooling"][0])]}
    return f"{args.prefix}-noise", {**grid, "grid": cell, "seed": 43, "repeats": args.noise_seeds}


def drop_items(storage: str) -> int:
    """Delete the per-item outputs -- the trials' ``items.*`` user attrs and the studies' zero-shot
    ``zero_shot_items.*`` and ``gold.*`` attrs: the confirm/export bootstrap reads them, this benchmark
    reads only values and CPU seconds; a resumed study records its zero-shot items again -- from a
    SQLite storage and compact it, so that the storage is small enough to commit as the record a
    later session resumes from. Returns the number of attrs deleted."""
    import sqlite3

    from sqlalchemy.engine import make_url

    url = make_url(storage)
    if not url.drivername.startswith("sqlite") or not url.database:
        raise ValueError(f"--drop-items works on a SQLite file storage, not {url.drivername}")
    with sqlite3.connect(url.database) as db:
        deleted = db.execute("DELETE FROM trial_user_attributes WHERE key LIKE 'items.%'").rowcount
        deleted += db.execute("DELETE FROM study_user_attributes WHERE key LIKE 'zero_shot_items.%' "
                              "OR key LIKE 'gold.%'").rowcount
    db = sqlite3.connect(url.database)
    try:
        db.execute("VACUUM")
    finally:
        db.close()
    return deleted


def run_study(name: str, study: dict[str, Any], args: argparse.Namespace) -> None:
    from tuner import parse_spec
    from tuner.service._orchestrate import exit_code, quiet_log, run_study as run

    spec = parse_spec({**study, "name": name})
    st = run(spec, args.storage, workers=args.workers, artifacts=False, log=quiet_log, progress=False)
    note(f"  {name}: {st.get('counts')} in {st['wall_s']:.0f} s wall")
    code = exit_code(st)
    if code:  # interrupted (Ctrl-C, SIGTERM) or a worker failed: later studies depend on this one (the
        # noise run on the grid's best cell), so stop here; running the same command resumes it
        note(f"{name} did not finish (exit {code}); stopping. Run the same command to resume.")
        raise SystemExit(code)


# ------------------------------------------------------------------------------------- analysis

def trajectory(trials: list[Any]) -> list[dict[str, Any]]:
    """Finished trials in the order they finished: cumulative CPU seconds and best dev so far
    (with the test score of that best trial). Pruned trials cost compute and never become best."""
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED") and t.datetime_complete is not None]
    done.sort(key=lambda t: (t.datetime_complete, t.number))
    out, spent, best, best_test = [], 0.0, None, None
    for t in done:
        spent += float(t.user_attrs.get("cpu_s", 0.0))
        if t.state.name == "COMPLETE" and t.value is not None and (best is None or t.value > best):
            best, best_test = float(t.value), t.user_attrs.get("scores.test.stsb")
        out.append({"trial": t.number, "state": t.state.name, "cpu_s": round(spent, 2), "best_dev": best,
                    "best_test": best_test, "value": None if t.value is None else float(t.value),
                    "loss": t.user_attrs.get("loss")})
    return out


def compute_to(traj: list[dict[str, Any]], target: float) -> Optional[float]:
    """CPU seconds spent when the best dev so far first reached ``target`` (None: never)."""
    for step in traj:
        if step["best_dev"] is not None and step["best_dev"] >= target:
            return step["cpu_s"]
    return None


def summarise(runs: dict[str, dict[int, list[dict[str, Any]]]], gap: float,
              offsets: Optional[dict[str, dict[int, float]]] = None) -> dict[str, Any]:
    """The efficiency table: per strategy, the compute to reach each target as a fraction of the
    grid's compute (``offsets`` adds a run's earlier compute, e.g. the quick study of a warm start).

    Targets: ``best`` = the best dev score any run found - gap (how fast a strategy gets as good
    as anything found); ``grid`` = the grid's best dev score - gap (the issue's goal: as good as the
    exhaustive baseline with <= 40% of its compute)."""
    offsets = offsets or {}
    finals = [s["best_dev"] for by_seed in runs.values() for traj in by_seed.values() for s in traj[-1:]
              if s["best_dev"] is not None]
    best = max(finals)
    grid_run = next(iter(runs["grid"].values())) if "grid" in runs else None
    grid_cpu = grid_run[-1]["cpu_s"] if grid_run else None
    targets = {"best": best - gap, **({"grid": grid_run[-1]["best_dev"] - gap} if grid_run else {})}
    rows = {}
    for strategy, by_seed in runs.items():
        row: dict[str, Any] = {"runs": len(by_seed)}
        for key, target in targets.items():
            costs = [compute_to(traj, target) for traj in by_seed.values()]
            fractions = [(c + offsets.get(strategy, {}).get(seed, 0.0)) / grid_cpu
                         for seed, c in zip(by_seed, costs) if c is not None and grid_cpu]
            row[f"reached_{key}"] = sum(c is not None for c in costs)
            row[f"fraction_to_{key}"] = _stats(fractions)
        row["final_dev"] = _stats([traj[-1]["best_dev"] for traj in by_seed.values()])
        row["final_test"] = _stats([traj[-1]["best_test"] for traj in by_seed.values()])
        row["total_cpu_s"] = _stats([traj[-1]["cpu_s"] + offsets.get(strategy, {}).get(seed, 0.0)
                                     for seed, traj in by_seed.items()])
        rows[strategy] = row
    for strategy, diffs in versus(runs).items():
        rows[strategy]["vs_random"] = diffs
    return {"best_dev": best, "grid_best_dev": grid_run[-1]["best_dev"] if grid_run else None,
            "targets": targets, "gap": gap, "grid_cpu_s": grid_cpu, "rows": rows}


def versus(runs: dict[str, dict[int, list[dict[str, Any]]]], baseline: str = "random",
           confidence: float = 0.95) -> dict[str, dict[str, Any]]:
    """Each strategy's final best dev and that trial's test score against ``baseline``'s, over their
    independent runs: difference of means, Welch ``confidence`` interval, two-sided p and Holm's
    adjustment over the strategies compared. Not compared: the baseline, rows with fewer than 2 runs
    (the grid) and ``+quick`` rows (the same scores as the row they charge)."""
    from scipy import stats

    from tuner.stats import holm

    if len(runs.get(baseline, {})) < 2:
        return {}
    compared = [s for s, by in runs.items() if s != baseline and "+" not in s and len(by) >= 2]
    out: dict[str, dict[str, Any]] = {s: {} for s in compared}
    for split, key in (("dev", "best_dev"), ("test", "best_test")):
        base = [float(t[-1][key]) for t in runs[baseline].values()]
        pvalues = []
        for strategy in compared:
            mine = [float(t[-1][key]) for t in runs[strategy].values()]
            res = stats.ttest_ind(mine, base, equal_var=False)
            ci = res.confidence_interval(confidence)
            out[strategy][split] = {"diff": statistics.fmean(mine) - statistics.fmean(base),
                                    "ci": [float(ci.low), float(ci.high)], "p": float(res.pvalue)}
            pvalues.append(float(res.pvalue))
        for strategy, adjusted in zip(compared, holm(pvalues)):
            out[strategy][split]["p_holm"] = adjusted
    return out


def _stats(values: list[Any]) -> dict[str, Any]:
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values)}


def markdown(summary: dict[str, Any], args: argparse.Namespace) -> str:
    def pct(s: dict) -> str:
        if not s["n"]:
            return "–"
        return f"{100 * s['mean']:.0f}%" + (f" ({100 * s['min']:.0f}–{100 * s['max']:.0f}%)" if s["n"] > 1 else "")

    def pts(s: dict) -> str:
        if not s["n"]:
            return "–"
        return f"{100 * s['mean']:.2f}" + (f" ± {100 * s['std']:.2f}" if s["n"] > 1 else "")

    def diff(d: Optional[dict]) -> str:
        if not d:
            return "–"
        return f"{100 * d['diff']:+.2f} [{100 * d['ci'][0]:+.2f}, {100 * d['ci'][1]:+.2f}] ({d['p_holm']:.2f})"

    t = summary["targets"]
    noise = summary.get("noise")
    if noise:
        gap_note = (f"Gap = {summary['target_sigmas']:g} σ = {100 * summary['gap']:.2f} points, where σ is the seed "
                    f"noise: the dev std of the grid's best cell ({' + '.join(noise['cell']['losses'])}, "
                    f"{noise['cell']['pooling'][0]}) over training seeds {', '.join(map(str, noise['seeds']))} "
                    f"(dev {', '.join(f'{100 * v:.2f}' for v in noise['dev'])}). A difference between strategies "
                    "below σ is within what one training seed changes.")
    else:
        gap_note = f"Gap = {100 * summary['gap']:.2f} points (no seed-noise run: --target-gap)."
    grid = (f"the grid's best dev {100 * summary['grid_best_dev']:.2f} - {100 * summary['gap']:.2f} = "
            f"{100 * t['grid']:.2f}; grid compute {summary['grid_cpu_s']:.0f} CPU-s") if "grid" in t \
        else "no finished grid run"
    lines = [gap_note, "", f"Targets (Spearman x 100): **best** = the best dev any run found {100 * summary['best_dev']:.2f} - "
             f"{100 * summary['gap']:.2f} = {100 * t['best']:.2f}; **grid** = {grid}. Compute = the trials' CPU "
             "seconds in the order they finished, as % of the grid's (mean over the runs that reached the "
             "target, range); final = the best dev trial of each run (mean ± std over runs); vs random = the "
             "difference of its mean from random search's, Welch 95% interval over the independent runs "
             "(Holm-adjusted p over the strategies compared).", "",
             "| strategy | runs | reached grid target | compute to grid target | reached best target | "
             "compute to best target | final best dev | its test | CPU-s spent | dev vs random | test vs random |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in summary["rows"].items():
        lines.append(f"| {name} | {row['runs']} | {row.get('reached_grid', 0)} | {pct(row.get('fraction_to_grid', _stats([])))} | "
                     f"{row['reached_best']} | {pct(row['fraction_to_best'])} | "
                     f"{pts(row['final_dev'])} | {pts(row['final_test'])} | {row['total_cpu_s']['mean']:.0f} | "
                     f"{diff(row.get('vs_random', {}).get('dev'))} | {diff(row.get('vs_random', {}).get('test'))} |")
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, dict[int, list[dict[str, Any]]]], summary: dict[str, Any], out: Path,
         offsets: dict[str, dict[int, float]]) -> None:
    """Best dev so far against compute (fraction of the grid's), median over seeds with the min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid_cpu = summary["grid_cpu_s"]
    xs = np.linspace(0, 1.0, 201)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, by_seed in runs.items():
        curves = []
        for seed, traj in by_seed.items():
            offset = offsets.get(name, {}).get(seed, 0.0)
            x = np.array([offset + s["cpu_s"] for s in traj]) / grid_cpu
            y = np.array([np.nan if s["best_dev"] is None else 100 * s["best_dev"] for s in traj])
            idx = np.searchsorted(x, xs, side="right") - 1
            curves.append(np.where(idx >= 0, y[np.clip(idx, 0, None)], np.nan))
        curves = np.array(curves)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mid, lo, hi = np.nanmedian(curves, 0), np.nanmin(curves, 0), np.nanmax(curves, 0)
        line, = ax.step(xs, mid, where="post", label=name, lw=1.8 if name != "grid" else 2.4)
        if len(by_seed) > 1:
            ax.fill_between(xs, lo, hi, step="post", alpha=0.15, color=line.get_color())
    ax.axhline(100 * summary["targets"]["best"], color="k", ls="--", lw=1,
               label=f"best target (best - {100 * summary['gap']:.2f})")
    if "grid" in summary["targets"]:
        ax.axhline(100 * summary["targets"]["grid"], color="k", ls=":", lw=1,
                   label=f"grid target (grid best - {100 * summary['gap']:.2f})")
    ax.axvline(0.4, color="grey", ls=":", lw=1)
    ax.set_xlabel("compute spent (fraction of the grid's CPU seconds)")
    ax.set_ylabel("best dev Spearman so far (x100)")
    finals = [100 * summary["best_dev"]]
    ax.set_ylim(min(finals) - 6, max(finals) + 0.8)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Anytime performance: median over independent runs, band = min-max")
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)


# ------------------------------------------------------------------------------------- main

def collect(args: argparse.Namespace, strategies: list[str], seeds: list[int]):
    """Trajectories per strategy and run from the storage, and the warm starts' quick-study compute."""
    import optuna

    from tuner import parse_spec

    runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
    offsets: dict[str, dict[int, float]] = {}
    names = {s.study_name for s in optuna.get_all_study_summaries(args.storage)}
    for strategy in strategies:
        for seed in ([0] if strategy == "grid" else seeds):
            studies = study_dicts(strategy, seed, args)
            name = studies[-1][0]
            if name not in names:
                continue
            traj = trajectory(optuna.load_study(study_name=name, storage=args.storage).get_trials(deepcopy=False))
            target = len(parse_spec({**studies[-1][1], "name": name}).cells()) if strategy == "grid" else args.n_trials
            if len(traj) < target:
                note(f"{name}: {len(traj)} of {target} trials finished; left out (run the bench again to finish it)")
                continue
            runs.setdefault(strategy, {})[seed] = traj
            if strategy == "tpe-mv-warm" and studies[0][0] in names:
                quick = trajectory(optuna.load_study(study_name=studies[0][0], storage=args.storage).get_trials())
                offsets.setdefault("tpe-mv-warm+quick", {})[seed] = quick[-1]["cpu_s"] if quick else 0.0
    if "tpe-mv-warm" in runs and "tpe-mv-warm+quick" in offsets:
        runs["tpe-mv-warm+quick"] = runs["tpe-mv-warm"]  # the same runs, charged the quick study's compute
    return runs, offsets


def best_grid_trial(args: argparse.Namespace) -> Optional[Any]:
    """The grid's best COMPLETE trial (None before the grid has run)."""
    import optuna

    name = study_dicts("grid", 0, args)[0][0]
    try:
        trials = optuna.load_study(study_name=name, storage=args.storage).get_trials(deepcopy=False)
    except KeyError:
        return None
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def measure_noise(args: argparse.Namespace) -> Optional[dict[str, Any]]:
    """The seed noise: the dev scores of the grid's best cell over the noise study's training seeds."""
    import optuna

    best = best_grid_trial(args)
    if best is None or args.noise_seeds < 2:
        return None
    name, study = noise_study(best, args)
    try:
        trials = optuna.load_study(study_name=name, storage=args.storage).get_trials(deepcopy=False)
    except KeyError:
        return None
    done = sorted((t for t in trials if t.state.name == "COMPLETE" and t.value is not None),
                  key=lambda t: t.params["seed"])
    if len(done) < 2:
        return None
    dev = [float(t.value) for t in done]
    return {"cell": study["grid"], "seeds": [int(t.params["seed"]) for t in done], "dev": dev,
            "test": [t.user_attrs.get("scores.test.stsb") for t in done], "std": statistics.stdev(dev),
            "grid_seed_dev": float(best.value)}


#: Settings that change what a trial measures: runs merged from a file must share them.
BUDGET_KEYS = ("n_trials", "model", "train_pairs", "eval_pairs", "batch_size", "lr", "eval_every",
               "pruner_startup", "quick_pairs", "quick_trials", "warm_k", "grid_losses", "seeding")
#: How sampler seeds are drawn; a record made with another rule cannot be merged.
SEEDING = "per-strategy-run"


def merge_recorded(runs: dict, offsets: dict, path: Path, args: argparse.Namespace) -> None:
    """Add the runs (and warm-start offsets) recorded in ``path`` that ``runs`` lacks, in place."""
    import json

    recorded = json.loads(path.read_text())
    differ = [k for k in BUDGET_KEYS if recorded["settings"].get(k) != getattr(args, k)]
    if differ:
        was = ", ".join(f"{k}={recorded['settings'].get(k)!r}" for k in differ)
        raise ValueError(f"{path} was run with other settings ({was}); "
                         "pass the same values or drop --merge")
    for strategy, by_seed in recorded["runs"].items():
        for seed, traj in by_seed.items():
            runs.setdefault(strategy, {}).setdefault(int(seed), traj)
    for strategy, by_seed in recorded.get("offsets", {}).items():
        for seed, value in by_seed.items():
            offsets.setdefault(strategy, {}).setdefault(int(seed), value)
    for strategy in runs:
        runs[strategy] = dict(sorted(runs[strategy].items()))
    if "tpe-mv-warm" in runs and "tpe-mv-warm+quick" in offsets:
        runs["tpe-mv-warm+quick"] = runs["tpe-mv-warm"]


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--runs", default="0,1,2,3,4",
                    help="independent runs per strategy (indices; each has its own sampler seed; the grid runs once)")
    ap.add_argument("--n-trials", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--storage", default="sqlite:///runs/hpo_efficiency.db")
    ap.add_argument("--prefix", default="hpo", help="study names: PREFIX-STRATEGY-rRUN")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--data-dir", default=None, help="default: tuner's data folder ($TUNER_DATA_DIR, ../shared/data)")
    ap.add_argument("--train-pairs", type=int, default=128)
    ap.add_argument("--eval-pairs", type=int, default=None,
                    help="score a stratified sample of N dev/test pairs (default: the full files)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5, help="the grid's lr (the other strategies search lr)")
    ap.add_argument("--eval-every", type=int, default=2, help="steps between intermediate dev scores (pruners)")
    ap.add_argument("--pruner-startup", type=int, default=4, help="median pruner: complete trials before pruning")
    ap.add_argument("--quick-pairs", type=int, default=32)
    ap.add_argument("--quick-trials", type=int, default=12)
    ap.add_argument("--warm-k", type=int, default=4)
    ap.add_argument("--grid-losses", default=None, help="the grid's loss rows (default: all 15 combinations)")
    ap.add_argument("--noise-seeds", type=int, default=5,
                    help="training seeds the grid's best cell is re-run with to measure the seed noise")
    ap.add_argument("--target-sigmas", type=float, default=1.0,
                    help="targets: a best dev score minus this many seed-noise stds")
    ap.add_argument("--target-gap", type=float, default=0.002,
                    help="the target gap when no noise was measured (0.002 = 0.2 Spearman points)")
    ap.add_argument("--out", default="bench/results/hpo_efficiency", help="writes OUT.json, OUT.md, OUT.png")
    ap.add_argument("--analyse-only", action="store_true")
    ap.add_argument("--drop-items", action="store_true",
                    help="first delete the per-item outputs from the SQLite --storage and compact it (the benchmark "
                         "does not read them): do it before committing the storage as the record")
    ap.add_argument("--merge", default=None, metavar="JSON",
                    help="also use the runs recorded in this earlier --out JSON (same budget settings)")
    args = ap.parse_args(argv)
    args.seeding = SEEDING
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        ap.error(f"unknown strategies {', '.join(unknown)}; choose from {', '.join(STRATEGIES)}")
    seeds = [int(s) for s in args.runs.split(",") if s.strip()]
    if args.drop_items:
        try:
            note(f"dropped {drop_items(args.storage)} per-item records from {args.storage}")
        except ValueError as exc:
            ap.error(str(exc))
    if not args.analyse_only:
        if "grid" in strategies:  # first: the noise is measured on its best cell
            for name, study in study_dicts("grid", 0, args):
                run_study(name, study, args)
            best = best_grid_trial(args)
            if best is not None and args.noise_seeds >= 2:
                name, study = noise_study(best, args)
                note(f"seed noise: {name}")
                run_study(name, study, args)
        for seed in seeds:  # run-major: every strategy gets its first run before any gets a second
            for strategy in strategies:
                if strategy == "grid":
                    continue
                for name, study in study_dicts(strategy, seed, args):
                    note(f"{strategy} run {seed}: {name}")
                    run_study(name, study, args)
    runs, offsets = collect(args, strategies, seeds)
    noise = measure_noise(args)
    if args.merge:
        try:
            merge_recorded(runs, offsets, Path(args.merge), args)
        except ValueError as exc:
            ap.error(str(exc))
    if "grid" not in runs:
        note("no grid run in the storage: fractions of the grid's compute need --strategies ...,grid")
    gap = args.target_sigmas * noise["std"] if noise else args.target_gap
    summary = {**summarise(runs, gap, offsets), "noise": noise, "target_sigmas": args.target_sigmas if noise else None}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from tuner import jsonsafe

    settings = {k: v for k, v in vars(args).items() if k not in ("analyse_only", "merge", "drop_items")}
    if args.merge:  # the recorded settings name every strategy and seed now in the file
        settings["strategies"] = ",".join(runs)
        settings["runs"] = ",".join(str(s) for s in sorted({s for by in runs.values() for s in by}))
    out.with_suffix(".json").write_text(jsonsafe.dumps(
        {"settings": settings, "environment": common.environment(), "summary": summary,
         "offsets": offsets, "runs": runs}, indent=1) + "\n")
    table = markdown(summary, args)
    out.with_suffix(".md").write_text(table)
    if "grid" in runs:
        plot(runs, summary, out.with_suffix(".png"), offsets)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
