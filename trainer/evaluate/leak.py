"""``partwise-train leak``: how near the rest of the mix brings two pieces in each part's subspace.

A part's subspace should move with that part and with nothing else in the mix. On triplets of
pseudo pieces drawn from a dataset split, as training draws them, for condition part c:

- the anchor (A, B) and the positive (A, C) share only part c (the same audio with ``--aligned``
  1, the default, as Table 2 pairs pieces);
- the anchor and the negative (D, B) share only the rest (every other part that is mixed in);
- the positive and the negative share nothing.

For each part the command reports the mean distance in its subspace of each kind of pair, the
share of triplets whose positive is nearer than the negative, and the *leak*
(:func:`model.losses.nuisance_leak`): the share of the subspace's nearness that the rest gives,
0 when sharing the rest brings no nearness, 1 when it brings as much as sharing the part. Every
figure is a mean over ``--draws`` independent draws with its standard deviation; several
weights files are measured on the same triplets, so their figures compare pair by pair.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.embedder import Embedder
from model.losses import nuisance_leak
from model.parts import PARTS, part_norms
from model.weights import WeightsError
from trainer.clitools import setup_logging
from trainer.config import TrainConfig

log = logging.getLogger(__name__)
FIGURES = ("d_part", "d_rest", "d_none", "leak", "triplet_acc")


def draw_figures(emb: torch.Tensor, cond: np.ndarray) -> dict[str, dict[str, float]]:
    """One draw's figures per part from triplet embeddings (3M, 640) in anchor, positive,
    negative order and their conditions (M,): {part: {d_part, d_rest, d_none, leak,
    triplet_acc}} for the parts that are the condition of at least two triplets."""
    a, p, n = emb[0::3], emb[1::3], emb[2::3]
    d_part, d_rest, d_none = part_norms(a - p), part_norms(a - n), part_norms(p - n)
    out: dict[str, dict[str, float]] = {}
    for c, part in enumerate(PARTS):
        sel = torch.from_numpy(cond == c)
        if int(sel.sum()) < 2:
            continue
        x, y, z = d_part[sel, c], d_rest[sel, c], d_none[sel, c]
        out[part] = {"d_part": x.mean().item(), "d_rest": y.mean().item(), "d_none": z.mean().item(),
                     "leak": nuisance_leak(x, y, z), "triplet_acc": 100.0 * (x < y).float().mean().item()}
    return out


def summarize(draws: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per part and figure, the mean and standard deviation over draws (NaN draws left out):
    {part: {figure: {"mean", "sd", "draws"}}}."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for part in PARTS:
        rows = [d[part] for d in draws if part in d]
        if not rows:
            continue
        out[part] = {}
        for f in FIGURES:
            v = np.array([r[f] for r in rows], dtype=float)
            v = v[np.isfinite(v)]
            out[part][f] = {"mean": float(v.mean()) if len(v) else float("nan"),
                            "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                            "draws": len(v)}
    return out


def measure(weights: Sequence[Path], data: Sequence[Path], *, split: str = "validation",
            seconds: float = 5.0, triplets: int = 400, draws: int = 5, aligned: float = 1.0,
            keep_prob: float = 0.6, seed: int = 0, device: str | None = None
            ) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """{weights file name: :func:`summarize` of its draws}, every model on the same triplets."""
    from trainer.bank import StemBank
    from trainer.data.dataset import SlakhDataset
    from trainer.sampling import TripletSampler, flatten

    if triplets < 2 or draws < 1:
        raise ValueError(f"need at least 2 triplets and 1 draw, got {triplets} and {draws}")
    if not 0.0 <= keep_prob <= 1.0:
        raise ValueError(f"keep_prob is a probability, got {keep_prob}")
    models = [Embedder.from_file(w, device=device, batch_size=64) for w in weights]
    rates = {m.audio.sample_rate for m in models}
    if len(rates) > 1:
        raise ValueError(f"{', '.join(map(str, weights))}: the models read different sample "
                         f"rates ({sorted(rates)}); measure them apart")
    sr = rates.pop()
    sets = [SlakhDataset(d, split, sample_rate=sr) for d in data]
    if sum(len(s) for s in sets) < 4:
        raise ValueError(f"{', '.join(map(str, data))}: the {split} split has fewer than 4 tracks")
    bank = StemBank.from_datasets(sets, segment_seconds=seconds, hop_seconds=seconds / 2,
                                  progress=False)
    sampler = TripletSampler(bank.index, same_tempo=False, aligned=aligned, keep_prob=keep_prob)
    per_model: list[list[dict]] = [[] for _ in models]
    for d in range(draws):
        trip = sampler.draw(triplets, np.random.default_rng([seed, d]))
        clips, _ = bank.render(flatten(trip), level_db=TrainConfig().level_db)
        cond = np.array([t.cond for t in trip])
        for i, m in enumerate(models):
            per_model[i].append(draw_figures(torch.from_numpy(m.embed_clips(clips)), cond))
    names = [Path(w).name for w in weights]
    if len(set(names)) < len(names):
        names = [str(w) for w in weights]
    return {name: summarize(rows) for name, rows in zip(names, per_model, strict=True)}


def format_table(result: dict) -> str:
    lines = []
    for name, parts in result.items():
        lines += [f"== {name}", f"{'part':8s}{'d_part':>8s}{'d_rest':>8s}{'d_none':>8s}"
                                f"{'leak':>15s}{'triplet acc %':>17s}"]
        for part, f in parts.items():
            lines.append(f"{part:8s}{f['d_part']['mean']:8.3f}{f['d_rest']['mean']:8.3f}"
                         f"{f['d_none']['mean']:8.3f}{f['leak']['mean']:9.2f} +-{f['leak']['sd']:4.2f}"
                         f"{f['triplet_acc']['mean']:11.1f} +-{f['triplet_acc']['sd']:4.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="partwise-train leak",
        description="How near the rest of the mix brings two pieces in each part's subspace, "
                    "on pseudo-piece triplets of a dataset split (several models: the same triplets).")
    ap.add_argument("weights", type=Path, nargs="+", help="weights file(s) (.safetensors + .json)")
    ap.add_argument("--data", type=Path, action="append", required=True,
                    help="dataset root in the Slakh layout (repeatable)")
    ap.add_argument("--split", default="validation", choices=("train", "validation", "test"))
    ap.add_argument("--seconds", type=float, default=5.0, help="segment length (default 5 s)")
    ap.add_argument("--triplets", type=int, default=400, help="triplets per draw (default 400)")
    ap.add_argument("--draws", type=int, default=5, help="independent draws (default 5)")
    ap.add_argument("--aligned", type=float, default=1.0,
                    help="share of triplets whose shared parts are the same audio (default 1)")
    ap.add_argument("--keep-prob", type=float, default=0.6,
                    help="chance that each part besides the condition is mixed in (default 0.6)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--device")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        result = measure(args.weights, args.data, split=args.split, seconds=args.seconds,
                         triplets=args.triplets, draws=args.draws, aligned=args.aligned,
                         keep_prob=args.keep_prob, seed=args.seed, device=args.device)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    except (WeightsError, OSError, ValueError, RuntimeError) as e:
        log.error("%s", e)
        return 1
    print(format_table(result))
    return 0
