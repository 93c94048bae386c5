"""``partwise-train export RUN --out FILE``: a run's best CSN as a shippable weights file."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from model.weights import WeightsError, load_weights, read_card, save_weights
from trainer.clitools import setup_logging

log = logging.getLogger(__name__)


def report_summary(report_dir: Path) -> tuple[str, dict]:
    """Key figures of a ``partwise-train eval`` report for the weights card: Tables 1 (5 s),
    2 and 3 per part for the model and the baselines, keyed by dataset and split."""
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
        "table3_stem_identification": r(t["table3"]["proposed"]),
    }


def _chunks(run: Path) -> list[dict]:
    """The run's chunks of training, oldest first (``RUN/chunks.jsonl``, written by each fit)."""
    path = run / "chunks.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def export(run: Path, out: Path, extra_card: dict | None = None,
           reports: list[Path] | None = None) -> str:
    """Copy ``run/best.safetensors`` to ``out`` with a full card; returns the sha256."""
    src = run / "best.safetensors"
    if not src.is_file():
        raise WeightsError(f"{src}: no trained model in this run (has 'fit' finished a main epoch?)")
    w = load_weights(src)
    card = dict(read_card(src).get("card", {}))
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    if config.get("init_weights"):  # the file's name, as in card["init"]: no machine paths
        config["init_weights"] = Path(config["init_weights"]).name
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
        "training": training | {"chunks": earlier + _chunks(run)},
        "data": summary.get("data", card.get("data")),
        "metrics": json.loads(metrics.read_text()) if metrics.exists() else {},
    })
    if reports:
        card["evaluation"] = dict(report_summary(d) for d in reports)
    card.update(extra_card or {})
    return save_weights(out, w.model, w.spec, card=card)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="partwise-train export",
                                 description="Write a run's best model as NAME.safetensors + NAME.json.")
    ap.add_argument("run", type=Path, help="run folder written by 'partwise-train fit'")
    ap.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    ap.add_argument("--report", type=Path, action="append", default=[],
                    help="an evaluation report folder whose key figures go into the card (repeatable)")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        digest = export(args.run, args.out, reports=args.report)
    except (WeightsError, OSError, ValueError) as e:
        log.error("%s", e)
        return 1
    print(f"{args.out} sha256={digest}")
    return 0
