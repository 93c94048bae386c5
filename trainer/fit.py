"""``partwise-train fit``: individual networks -> pre-training -> CSN training (paper sec. 3-4.1).

The command only: it reads the options, resumes or reopens a run folder, and runs
:class:`trainer.stages.Run`. The epoch loop, checkpoints and resume live in
:mod:`trainer.loop`, the stages in :mod:`trainer.stages`, the run summary in
:mod:`trainer.summary`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import torch.distributed as dist

from trainer.clitools import portable_args, setup_logging
from trainer.config import PRESETS, TrainConfig, apply_overrides, check_start, resolve
from trainer.loop import Paused, reopen
from trainer.stages import Run

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="partwise-train fit",
        description="Train the CSN: individual networks, pre-training, then triplet + norm "
                    "training on pseudo pieces. Any config value can be overridden as --key=value "
                    "(see trainer/config.py), e.g. --epochs=200 --widths=16,32,64,128,128.")
    ap.add_argument("--data", type=Path, action="append", required=True,
                    help="dataset in the Slakh layout (repeatable: the splits of several "
                         "datasets are pooled, e.g. generated songs and rendered MIDI)")
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    ap.add_argument("--out", type=Path, required=True, help="run folder")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out")
    ap.add_argument("--reopen", choices=["pretrain", "main"],
                    help="with --resume: let this finished stage train on (e.g. with a larger "
                         "--pre_epochs or --time_budget_min) and redo the stages after it")
    ap.add_argument("--init", type=Path, metavar="WEIGHTS",
                    help="start the main stage from these weights (e.g. the shipped model) with a "
                         "fresh optimizer; no individual networks or pre-training. Their card's "
                         "training config is the base the --key=value overrides change")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args, overrides = ap.parse_known_args(argv)
    setup_logging()
    try:
        if args.out.exists() and any(args.out.iterdir()) and not args.resume:
            raise ValueError(f"{args.out}: run folder is not empty; pass --resume to continue it")
        if args.resume and (args.out / "config.json").exists():
            saved = TrainConfig.from_dict(json.loads((args.out / "config.json").read_text()))
            cfg = apply_overrides(saved, overrides)
            if args.init and Path(cfg.init_weights) != args.init:
                raise ValueError(f"{args.out}: this run did not start from {args.init}; "
                                 "resume it without --init")
        elif args.init:
            cfg = init_config(args.init, args.preset, overrides)
        else:
            cfg = resolve(args.preset, overrides)
        check_start(cfg)
        for d in args.data:
            if not d.is_dir():
                raise ValueError(f"{d}: dataset folder not found")
        if args.reopen:
            if not args.resume:
                raise ValueError("--reopen needs --resume (it continues an existing run)")
            reopen(args.out, args.reopen)
        run = Run(cfg, args.data, args.out, progress=not args.quiet)
        started, rows_before = time.time(), _log_rows(args.out)
        previous = _exit_on_sigterm()
        try:
            best = run.fit()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if run.env.main:
                record_chunk(args.out, started, rows_before, list(argv if argv is not None else sys.argv[1:]))
    except Paused as p:
        log.info("paused in stage %s; continue with --resume", p)
        return 0
    except (ValueError, RuntimeError, OSError) as e:
        log.error("%s", e)
        return 1
    if run.env.main:
        print(best)
    if run.env.world > 1:
        dist.destroy_process_group()
    return 0


def _exit_on_sigterm():
    """Make SIGTERM (``kill``, a scheduler's stop) end the process as Ctrl-C does, through the
    ``finally`` that records the chunk, instead of at once: a run stopped that way still says in
    its card what it trained. Returns the handler it replaced (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: object) -> None:
        log.info("stopped by signal %d; the last checkpoint is kept, continue with --resume", signum)
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


def init_config(weights: Path, preset: str, overrides: list[str]) -> TrainConfig:
    """The config of a run that starts from ``weights``: the training config in their card
    (so the network, audio front end and losses match what trained them), else the preset,
    with the overrides on top. The weights are checked here, before any data is loaded."""
    from model.weights import load_weights

    card = load_weights(weights).card
    if not isinstance(card.get("config"), dict):
        log.warning("%s: no training config in its card; the %r preset and the options given "
                    "are this run's config", weights, preset)
        cfg = resolve(preset, overrides)
    else:
        base = TrainConfig.from_dict(card["config"])
        # the earlier run's budget, epoch cap, fresh first blocks and teacher are not this run's
        base.time_budget_min, base.max_epochs_this_run, base.init_reset_blocks = 0.0, 0, 0
        base.distill_weights, base.distill_lambda, base.distill_fade = "", 0.0, 0.0
        cfg = apply_overrides(base, overrides)
    cfg.init_weights = str(weights)
    return cfg


CHUNKS = "chunks.jsonl"  # one line per fit process: what it trained, how long, with which options


def _log_rows(out: Path) -> int:
    log_path = out / "log.jsonl"
    return len(log_path.read_text().splitlines()) if log_path.is_file() else 0


def record_chunk(out: Path, started: float, rows_before: int, argv: list[str]) -> dict | None:
    """Append this process's chunk of training to ``RUN/chunks.jsonl``: when it started, its wall
    time, the command's arguments, and per stage the epochs it trained and the best validation
    score among them. Nothing when the process trained no epoch. ``partwise-train export``
    carries the lines into the model card (``training.chunks``)."""
    log_path = out / "log.jsonl"
    if not log_path.is_file():
        return None
    rows = [json.loads(x) for x in log_path.read_text().splitlines()[rows_before:] if x.strip()]
    stages: dict[str, dict] = {}
    for r in rows:
        if "epoch" not in r or "stage" not in r:
            continue
        s = stages.setdefault(r["stage"], {"first_epoch": r["epoch"], "last_epoch": r["epoch"]})
        s["last_epoch"] = r["epoch"]
        score = r.get("val_score")
        if score is not None and score > s.get("best_score", float("-inf")):
            s["best_score"], s["best_epoch"] = round(float(score), 4), r["epoch"]
    if not stages:
        return None
    chunk = {
        "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds"),
        "wall_minutes": round((time.time() - started) / 60.0, 1),
        "args": portable_args(argv),
        "stages": stages,
    }
    with open(out / CHUNKS, "a") as f:
        f.write(json.dumps(chunk) + "\n")
    return chunk

