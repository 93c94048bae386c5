"""Training throughput: steps/s and triplets/s of the main stage, data time apart from compute.

    python bench/bench_train.py [--data DIR] [--preset cpu | --config RUN/config.json]
                                [--steps 20] [--set key=value ...]

Without --data a small generated set is built in a temporary folder. --config measures the
recipe a run trained with (its config.json: loss terms, label groups, segment length, network),
from fresh weights, as its main stage would run it. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from trainer.config import TrainConfig, apply_overrides, resolve
from trainer.stages import Run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--config", type=Path, help="a run's config.json (instead of --preset)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from trainer.data.synth import build_dataset

            t0 = time.perf_counter()
            data = build_dataset(Path(tmp) / "data", n_tracks=24, seed=0, song_seconds=20,
                                 splits=(0.7, 0.15, 0.15))
            build_s = time.perf_counter() - t0
        else:
            build_s = None
        recipe = (TrainConfig.from_dict(json.loads(args.config.read_text()))
                  if args.config is not None else None)

        def make(sets: list[str]) -> TrainConfig:
            if recipe is None:
                return resolve(args.preset, sets)
            return apply_overrides(replace(recipe, init_weights=""), sets)

        base = make(list(args.set))
        cfg = make([*args.set, "use_pretrain=false", "epochs=1",
                    f"triplets_per_epoch={args.steps * base.batch}",
                    "val_triplets=60", "time_budget_min=0", "max_epochs_this_run=0"])
        run = Run(cfg, data, Path(tmp) / "run", progress=False)
        t0 = time.perf_counter()
        run.main_stage()
        wall = time.perf_counter() - t0
        row = [json.loads(x) for x in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()][-1]
    steps = row["step"]
    result = {
        "device": str(run.env.device),
        "torch_threads": torch.get_num_threads(),
        "preset": cfg.preset,
        "recipe": None if args.config is None else str(args.config),
        "batch_triplets": cfg.batch,
        "clips_per_step": 3 * cfg.batch,
        "additional_triplets": cfg.use_additional,
        "steps": steps,
        "train_seconds": round(row["epoch_s"], 2),
        "data_seconds": round(row["data_s"], 2),
        "compute_seconds": round(row["compute_s"], 2),
        "steps_per_s": round(steps / row["epoch_s"], 3),
        "basic_triplets_per_s": round(steps * cfg.batch / row["epoch_s"], 2),
        "data_share": round(row["data_s"] / row["epoch_s"], 3),
        # the training part of one epoch of the recipe (its triplets_per_epoch) at this rate
        "epoch_seconds": round(base.triplets_per_epoch * row["epoch_s"] / (steps * cfg.batch), 1),
        "wall_seconds_with_validation": round(wall, 2),
        "dataset_build_seconds": None if build_s is None else round(build_s, 1),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
