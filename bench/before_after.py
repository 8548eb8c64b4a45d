"""Before/after: the engine at a git commit vs the working tree, in one process.

Default commit: e46397d ("Engine foundation"), the engine before the speed work in bench/.

``tuner/{tokenize,models,train,evaluate}.py`` are read from the commit (``git show``) into a
throw-away package ``tuner_head`` (their imports of each other rewritten to it; everything else,
e.g. the losses, is shared), so the old and new code run side by side, interleaved, on the same
model, data and seeds. What is compared (``--what``):

* ``train``:  ``finetune`` (CoSENT, MiniLM, STS-B train, first ``--steps`` steps, batch 32), pairs/s;
* ``encode``: ``encode`` of the unique STS-B test sentences at batch 64 (token cache cleared), sentences/s;
* ``load``:   ``load_encoder`` with the base weights already cached (what every later trial pays), seconds.

    python bench/before_after.py --what train,encode,load
    python bench/before_after.py --commit HEAD --what train --steps 6
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (REPO, Clock, emit, environment, interleaved, median, model_path, ratio_fields, rates, set_threads,
                    stsb_test_sentences, stsb_train_pairs)

ENGINE = ("tokenize", "models", "train", "evaluate")
#: where each of those modules lives now
NOW = {"tokenize": "tuner.models._tokenize", "models": "tuner.models._encoder", "train": "tuner.engine._train",
       "evaluate": "tuner.evaluation"}


def load_at_commit(commit: str):
    """Import the engine modules as they were at ``commit``; returns {name: module}."""
    root = Path(tempfile.mkdtemp(prefix="tuner_head_"))
    pkg = root / "tuner_head"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ENGINE:
        src = subprocess.run(["git", "show", f"{commit}:tuner/{name}.py"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout
        for other in ENGINE:
            src = src.replace(f"from tuner.{other} import", f"from tuner_head.{other} import")
            src = src.replace(f"import tuner.{other}", f"import tuner_head.{other}")
        (pkg / f"{name}.py").write_text(src)
    sys.path.insert(0, str(root))
    return {name: importlib.import_module(f"tuner_head.{name}") for name in ENGINE}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commit", default="e46397d", help="the 'before' engine (default: the engine foundation)")
    ap.add_argument("--what", default="train,encode,load")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.batch_size, args.repeats = 2, 8, 2
    set_threads(args.threads)
    old = load_at_commit(args.commit)
    new = {name: importlib.import_module(module) for name, module in NOW.items()}
    path = model_path(args.model)
    for mods in (old, new):
        mods["models"].load_encoder(path, device="cpu")  # fill each side's base-weights cache
    what = args.what.split(",")
    common = {"commit": args.commit, "model": args.model, "repeats": args.repeats}

    if "train" in what:
        pairs = stsb_train_pairs()

        def trainer(mods, steps=args.steps):
            def run():
                enc = mods["models"].load_encoder(path, device="cpu")
                config = mods["train"].TrainConfig(weights={"cosent": 1}, batch_size=args.batch_size, max_steps=steps,
                                                   seed=0)
                with Clock() as clock:
                    res = mods["train"].finetune(enc, pairs, config, progress=False)
                return {"wall_s": clock.wall, "cpu_s": clock.cpu, "pairs": res.examples, "losses": res.losses}
            return run

        secs, outs = interleaved({"before": trainer(old), "after": trainer(new)}, args.repeats,
                                 warmups={"before": trainer(old, 1), "after": trainer(new, 1)}, label="train")
        pps = {k: rates(outs[k], "pairs") for k in outs}
        emit(bench="before_after", what="train", batch_size=args.batch_size, steps=args.steps,
             before_pairs_per_s=median(pps["before"]["wall"]), after_pairs_per_s=median(pps["after"]["wall"]),
             before_pairs_per_cpu_s=median(pps["before"]["cpu"]), after_pairs_per_cpu_s=median(pps["after"]["cpu"]),
             **ratio_fields(pps["after"], pps["before"]),
             max_loss_diff=max(abs(a - b) for a, b in zip(outs["before"][0]["losses"], outs["after"][0]["losses"])),
             **common)

    if "encode" in what:
        sentences, _ = stsb_test_sentences()
        if args.smoke:
            sentences = sentences[:128]
        encs = {"before": old["models"].load_encoder(path, device="cpu"),
                "after": new["models"].load_encoder(path, device="cpu")}

        def encoder(side, mods, texts=sentences):
            def run():
                mods["tokenize"].clear_cache()
                with Clock() as clock:
                    emb = mods["evaluate"].encode(encs[side], texts, batch_size=64)
                return {"wall_s": clock.wall, "cpu_s": clock.cpu, "emb": emb}
            return run

        secs, outs = interleaved({"before": encoder("before", old), "after": encoder("after", new)}, args.repeats,
                                 warmups={"before": encoder("before", old, sentences[:64]),
                                          "after": encoder("after", new, sentences[:64])}, label="encode")
        import numpy as np

        sps = {k: rates(outs[k], len(sentences)) for k in outs}
        emit(bench="before_after", what="encode", sentences=len(sentences),
             before_sentences_per_s=median(sps["before"]["wall"]), after_sentences_per_s=median(sps["after"]["wall"]),
             **ratio_fields(sps["after"], sps["before"]),
             max_abs_diff=float(np.abs(outs["before"][0]["emb"] - outs["after"][0]["emb"]).max()), **common)

    if "load" in what:
        def loader(mods):
            def run():
                with Clock() as clock:
                    enc = mods["models"].load_encoder(path, device="cpu")
                del enc
                return {"wall_s": clock.wall, "cpu_s": clock.cpu}
            return run

        reps = max(args.repeats, 5)
        secs, outs = interleaved({"before": loader(old), "after": loader(new)}, reps,
                                 warmups={"before": loader(old), "after": loader(new)}, label="load")
        speed = {k: rates(outs[k], 1.0) for k in outs}  # loads per second
        emit(bench="before_after", what="load_encoder_cached", before_s=median(secs["before"]),
             after_s=median(secs["after"]), before_cpu_s=median([o["cpu_s"] for o in outs["before"]]),
             after_cpu_s=median([o["cpu_s"] for o in outs["after"]]), **ratio_fields(speed["after"], speed["before"]),
             **{**common, "repeats": reps})
    emit(bench="before_after", env=environment())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
