"""The end of a run: ``summary.json`` (time, device, data), ``loss.png`` (the log's curves) and
``metrics.json`` (Tables 2 and 3 in small on the validation split, for the best model, and the
effective dimension of every subspace epoch by epoch)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

from model.embedder import Embedder
from model.weights import load_weights

if TYPE_CHECKING:
    from trainer.stages import Run

log = logging.getLogger(__name__)


def finish(run: Run, seconds: float) -> None:
    """Write the run summary, the validation metrics and the loss plot."""
    summary = {"seconds": training_seconds(run.out / "log.jsonl"), "device": str(run.env.device),
               "world_size": run.env.world, "data": run.summary,
               "last_process_seconds": round(seconds, 1)}
    (run.out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_log(run.out / "log.jsonl", run.out / "loss.png")
    if (run.out / "best.safetensors").exists():
        metrics = validation_metrics(run)
        metrics["effective_dimension"] = dimension_history(run.out / "log.jsonl")
        log.info("validation metrics: %s", json.dumps(metrics))
        (run.out / "metrics.json").write_text(json.dumps(metrics, indent=2))


def training_seconds(log_path: Path) -> float:
    """Time spent in training epochs over every process of a run (resumes included)."""
    rows = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
    return round(sum(r.get("epoch_s", 0.0) for r in rows), 3)  # ms: a tiny epoch is not 0 s


def validation_metrics(run: Run, seed: int = 0, draws: int = 5) -> dict:
    """Table 2 and Table 3 in small on the validation split, for the best model of the run.

    Music-ID alone says little (an MFCC baseline scores high on it while knowing nothing of
    parts), so a run is judged by pseudo-piece separation (chance 10 %) and clean-stem
    identification (chance 20 %). Separation takes the plan ``partwise-train eval`` takes: the
    mean and std over ``draws`` seeded draws, or on a split so small that every draw would hold
    the same labels, every pair of whole pieces with its standard error over label tracks
    (``table2_plan``).
    """
    from trainer.data.dataset import SlakhDataset
    from trainer.evaluate.validation import pseudo_piece_spread, stem_identification

    w = load_weights(run.out / "best.safetensors", run.env.device)
    fn = Embedder(w.model, w.spec, device=run.env.device).embed_clips
    sec = run.cfg.segment_seconds

    def finite(scores: dict[str, float]) -> dict[str, float | None]:
        return {k: (None if math.isnan(v) else round(v, 2)) for k, v in scores.items()}

    def one(root: Path) -> dict:
        ds = SlakhDataset(root, "validation", sample_rate=run.cfg.sample_rate)
        if not len(ds):  # a training-only dataset: nothing to measure, and no plan to name
            return {"split": "validation", "tracks": 0, "segment_seconds": sec}
        plan, sp = pseudo_piece_spread(ds, fn, seconds=sec, seed=seed, draws=draws)
        return {
            "split": "validation", "tracks": len(ds), "segment_seconds": sec,
            "table2_pseudo_piece_knn": finite({p: s["mean"] for p, s in sp.items()}),
            "table2_std": finite({p: s["std"] for p, s in sp.items()}), "table2_plan": plan,
            "table2_draws": draws if plan == "drawn" else 1,
            "table3_stem_identification": finite(stem_identification(
                ds, fn, seconds=sec, seed=seed, max_segments=20)),
        }

    first = one(run.data[0])
    if len(run.data) > 1:  # the first dataset's figures stay at the top level
        first["datasets"] = {run.data[0].name: dict(first)} | {d.name: one(d) for d in run.data[1:]}
    return first


def dimension_history(log_path: Path) -> dict[str, list[dict[str, float]]]:
    """The per-epoch effective dimensions of a run's log, by stage: ``{stage: [{"epoch": e,
    part: dim, ...}]}`` (the individual networks under ``individual:<part>`` with key ``dim``)."""
    out: dict[str, list[dict[str, float]]] = {}
    if not log_path.exists():
        return out
    for line in log_path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        row = {"epoch": r["epoch"]}
        row |= {k[len("val_dim_"):]: r[k] for k in r if k.startswith("val_dim_")}
        row |= {"dim": r["val_dim"]} if "val_dim" in r else {}
        row |= {f"target_{k[len('target_dim_'):]}": r[k] for k in r if k.startswith("target_dim_")}
        if len(row) > 1:
            out.setdefault(r["stage"], []).append(row)
    return out


def plot_log(log_path: Path, png: Path) -> None:
    """Loss and validation curves of every stage of a run's log, one panel per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
    stages = list(dict.fromkeys(r["stage"].split(":")[0] for r in rows))
    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3), squeeze=False)
    for ax, st in zip(axes[0], stages, strict=True):
        for name in sorted({r["stage"] for r in rows if r["stage"].split(":")[0] == st}):
            sel = [r for r in rows if r["stage"] == name]
            ax.plot([r["epoch"] for r in sel], [r["loss"] for r in sel], label=f"{name} loss")
            key = next((k for k in ("val_acc", "val_mse") if k in sel[0]), None)
            if key:
                ax.plot([r["epoch"] for r in sel], [r[key] for r in sel], "--", label=f"{name} {key}")
        ax.set_title(st)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
