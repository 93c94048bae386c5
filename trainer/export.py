"""``partwise-train export RUN --out FILE``: a run's best CSN as a shippable weights file.

``--last`` exports the main stage's last epoch instead (its checkpoint), ``--ema`` that epoch's
moving average of the weights (a run trained with ``--ema_decay``): at the end of a cosine
schedule the last epoch is often the one to measure and ship, while ``best.safetensors`` is the
epoch a small validation set happened to score highest.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from model.weights import Weights, WeightsError, load_weights, read_card, save_weights
from trainer.clitools import portable_args, setup_logging
from trainer.config import portable_config
from trainer.loop import averaged_state

log = logging.getLogger(__name__)


def report_summary(report_dir: Path) -> tuple[str, dict]:
    """Key figures of a ``partwise-train eval`` report for the weights card: Tables 1 (5 s),
    2 and 3 per part for the model and the baselines, keyed by dataset and split, with Table
    2's plan and the model's spread (std over draws, or standard error over label tracks)."""
    path = report_dir / "report.json"
    if not path.is_file():
        raise ValueError(f"{path}: no evaluation report there")
    rep = json.loads(path.read_text())
    t = rep["tables"]

    def r(d: dict) -> dict:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in d.items()}

    key = f"{Path(rep['dataset']['root']).name}/{rep['dataset']['split']}"  # no machine paths
    return key, {
        "tracks": rep["dataset"]["tracks"],
        "table1_music_id_5s": {m: r(v["5"]) for m, v in t["table1"].items() if "5" in v},
        "table2_pseudo_piece_knn": {m: r(v) for m, v in t["table2"].items()},
        # how Table 2 was taken: seeded draws, or every pair of a small split once
        "table2_plan": rep["config"].get("plan", "drawn"),
        "table2_std": r({p: s["std"] for p, s in t.get("table2_spread", {}).get("proposed", {}).items()}),
        "table3_stem_identification": r(t["table3"]["proposed"]),
    }


def _jsonl(path: Path) -> list[dict]:
    """The rows of a run's JSON-lines file, oldest first (none when it is missing)."""
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _last_epoch(run: Path, w: Weights, card: dict, ema: bool) -> dict:
    """Load the main stage's last checkpoint (or its moving average) into ``w.model``; returns
    ``card`` with that epoch's validation row and presence biases."""
    path = run / "ckpt-main.pt"
    if not path.is_file():
        raise WeightsError(f"{path}: no main-stage checkpoint in this run")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        src = blob["ema"] if ema else blob["modules"]
        epoch = int(blob["state"]["epoch"])
    except KeyError as e:
        what = "no moving average (train with --ema_decay)" if ema else f"no {e.args[0]!r}"
        raise WeightsError(f"{path}: {what}") from None
    except (RuntimeError, OSError, EOFError) as e:
        raise WeightsError(f"{path}: not a readable checkpoint ({e})") from None
    own = averaged_state if ema else dict
    try:
        w.model.load_state_dict(own(src["net"]))
    except RuntimeError as e:
        raise WeightsError(f"{path}: its network does not match the run's best file ({e})") from None
    bias = own(src.get("norm", {})).get("bias")
    row = next((r for r in reversed(_jsonl(run / "log.jsonl"))
                if r.get("stage") == "main" and r.get("epoch") == epoch), None)
    card = card | {"exported": {"epoch": epoch, "weights": "moving average" if ema else "last"}}
    if row is not None:
        card["val"] = row
    if bias is not None:
        card["norm_bias"] = [float(x) for x in bias]
    return card


def export(run: Path, out: Path, extra_card: dict | None = None,
           reports: list[Path] | None = None, last: bool = False, ema: bool = False) -> str:
    """Copy ``run/best.safetensors`` (or, with ``last``, the main stage's last epoch; with
    ``ema`` its moving average) to ``out`` with a full card; returns the sha256."""
    src = run / "best.safetensors"
    if not src.is_file():
        raise WeightsError(f"{src}: no trained model in this run (has 'fit' finished a main epoch?)")
    w = load_weights(src)
    card = dict(read_card(src).get("card", {}))
    if last or ema:
        card = _last_epoch(run, w, card, ema)
    # the start and teacher files by name, as in card["init"]: no machine paths
    config = portable_config(json.loads((run / "config.json").read_text())) \
        if (run / "config.json").exists() else {}
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    metrics = run / "metrics.json"
    init = card.pop("init", None)  # a run started from other weights (fit --init) goes on from them
    earlier = init.pop("chunks", []) if isinstance(init, dict) else []
    earlier_s = init.pop("seconds", None) if isinstance(init, dict) else None
    if init:
        card["init"] = init
    training = {k: summary.get(k) for k in ("seconds", "device", "world_size")}
    if earlier_s is not None and training["seconds"] is not None:  # the weights it started from
        training["seconds"] = round(earlier_s + training["seconds"], 3)
    card.update({
        "config": config,
        "training": training | {"chunks": earlier + [
            ch | {"args": portable_args(ch["args"])} if isinstance(ch.get("args"), list) else ch
            for ch in _jsonl(run / "chunks.jsonl")]},  # older runs may have kept whole paths
        "data": summary.get("data", card.get("data")),
    })
    # the run's final validation metrics describe its best file; beside another epoch, say so
    card["metrics_of_best" if last or ema else "metrics"] = \
        json.loads(metrics.read_text()) if metrics.exists() else {}
    if reports:
        card["evaluation"] = dict(report_summary(d) for d in reports)
    card.update(extra_card or {})
    return save_weights(out, w.model, w.spec, card=card)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="partwise-train export",
                                 description="Write a run's best model (or its last epoch) as "
                                             "NAME.safetensors + NAME.json.")
    ap.add_argument("run", type=Path, help="run folder written by 'partwise-train fit'")
    ap.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    ap.add_argument("--report", type=Path, action="append", default=[],
                    help="an evaluation report folder whose key figures go into the card (repeatable)")
    ap.add_argument("--last", action="store_true",
                    help="the main stage's last epoch (its checkpoint) instead of the best one")
    ap.add_argument("--ema", action="store_true",
                    help="the last epoch's moving average of the weights (fit --ema_decay)")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        digest = export(args.run, args.out, reports=args.report, last=args.last, ema=args.ema)
    except (WeightsError, OSError, ValueError) as e:
        log.error("%s", e)
        return 1
    print(f"{args.out} sha256={digest}")
    return 0
