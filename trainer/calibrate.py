"""``partwise-train calibrate``: set each part's presence bias from real-music validation data.

The norm loss learns one bias b_j per part so that sigmoid(log ||f_j|| + b_j) says whether part
j plays (eq. 5). It learns it on training mixes; what a user sees (the part bars, the presence
filter, "similar in") is read on other music. This command re-fits b_j on the validation split
of one or more datasets, on the kinds of input a library holds: full mixes, each audible part
alone (a solo recording) and random subsets of parts (a band without its bass). For each part the
threshold on log ||f_j|| that maximises balanced accuracy (the mean of the recall on inputs where
the part plays and on inputs where it does not) becomes -b_j. The tensors are copied unchanged;
the card keeps the trained biases (``norm_bias_trained``) and what the calibration measured.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.embedder import Embedder
from model.parts import N_PARTS, PARTS, presence_logits
from model.weights import WeightsError, read_card, save_weights
from trainer.bank import audible, level
from trainer.clitools import setup_logging
from trainer.config import TrainConfig
from trainer.data.dataset import ACTIVITY_THRESHOLD_DB, SlakhDataset

log = logging.getLogger(__name__)

KINDS = ("mix", "solo", "subset")


@dataclass
class CalibrationSet:
    """Embedded calibration inputs: log part norms (M, 5) as the presence rule reads them
    (:func:`model.parts.presence_logits` without biases), truth (M, 5) bool, kind (M,) str."""

    log_norms: np.ndarray
    truth: np.ndarray
    kind: np.ndarray


def _windows(n: int, win: int, per_track: int) -> list[int]:
    if n < win:
        return [0]
    starts = np.linspace(0, n - win, num=min(per_track, max(1, (n - win) // win + 1)))
    return sorted({int(s) for s in starts})


def build_inputs(parts_of_tracks: Sequence[np.ndarray], sr: int, seconds: float, per_track: int,
                 rng: np.random.Generator, level_db: float, gain_db: float, threshold_db: float
                 ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Windows of each track's parts (5, n) -> (clips (M, win), truth (M, 5) bool, kind (M,)).

    Each part is brought to ``level_db`` RMS and scaled by a random gain in [-gain_db, 0] dB, as
    in training. Per window: the mix of its audible parts, each audible part alone, and one
    random non-empty subset of them (each kept with probability 1/2).
    """
    win = int(round(seconds * sr))
    clips, truth, kind = [], [], []
    for parts in parts_of_tracks:
        parts = np.asarray(parts, np.float32)
        if parts.ndim != 2 or parts.shape[0] != N_PARTS:
            raise ValueError(f"expected ({N_PARTS}, samples) parts, got {parts.shape}")
        for s in _windows(parts.shape[1], win, per_track):
            seg = torch.zeros(N_PARTS, win)
            chunk = torch.from_numpy(parts[:, s:s + win])
            seg[:, :chunk.shape[1]] = chunk
            on = audible(seg, threshold_db).numpy()
            if not on.any():
                continue
            gains = 10 ** (rng.uniform(-gain_db, 0.0, N_PARTS) / 20)
            stems = torch.stack([level(seg[j], level_db, threshold_db) * float(gains[j])
                                 for j in range(N_PARTS)])
            clips.append(stems.sum(0))
            truth.append(on.copy())
            kind.append("mix")
            for j in np.flatnonzero(on):
                clips.append(stems[j])
                truth.append(np.arange(N_PARTS) == j)
                kind.append("solo")
            keep = on & (rng.random(N_PARTS) < 0.5)
            if not keep.any():
                keep[rng.choice(np.flatnonzero(on))] = True
            clips.append(stems[torch.from_numpy(keep)].sum(0))
            truth.append(keep)
            kind.append("subset")
    if not clips:
        raise ValueError("no audible windows to calibrate on")
    return torch.stack(clips), np.array(truth, bool), np.array(kind)


def best_threshold(log_norm: np.ndarray, present: np.ndarray) -> tuple[float, float]:
    """The threshold t on one part's log norms that maximises balanced accuracy of
    ``log_norm > t`` against ``present``; returns (t, balanced accuracy). t lies midway
    between two neighbouring observed values."""
    x = np.asarray(log_norm, np.float64)
    y = np.asarray(present, bool)
    if y.all() or not y.any():
        raise ValueError("need inputs where the part plays and inputs where it does not")
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    # predicting present for every value above position i: recall of present counts those after i
    pos_above = ys[::-1].cumsum()[::-1]          # present at or after index i
    neg_below = np.cumsum(~ys) - (~ys)           # absent strictly before index i
    n_pos, n_neg = ys.sum(), (~ys).sum()
    bal = 0.5 * (pos_above / n_pos + neg_below / n_neg)
    # only cut between distinct values
    valid = np.r_[True, xs[1:] > xs[:-1]]
    bal = np.where(valid, bal, -1.0)
    i = int(np.argmax(bal))
    t = xs[0] - 1.0 if i == 0 else 0.5 * (xs[i - 1] + xs[i])
    return float(t), float(bal[i])


def presence_scores(cal: CalibrationSet, bias: np.ndarray) -> dict[str, dict[str, float]]:
    """Per part and input kind, balanced accuracy (%) of sigmoid(log ||f_j|| + b_j) > 0.5;
    plus, on solo inputs, how often every one of the five decisions is right."""
    pred = cal.log_norms + np.asarray(bias, np.float64).reshape(1, N_PARTS) > 0.0
    out: dict[str, dict[str, float]] = {}
    for c, p in enumerate(PARTS):
        row = {}
        for k in (*KINDS, "all"):
            rows = np.ones(len(pred), bool) if k == "all" else cal.kind == k
            y, yhat = cal.truth[rows, c], pred[rows, c]
            rec = [float(np.mean(yhat[y == v] == v)) for v in (True, False) if (y == v).any()]
            row[k] = round(100.0 * float(np.mean(rec)), 2) if rec else float("nan")
        out[p] = row
    solo = cal.kind == "solo"
    out["solo_all_five_right"] = {
        p: round(100.0 * float(np.mean((pred[solo & cal.truth[:, c]] == cal.truth[solo & cal.truth[:, c]]).all(1))), 2)
        for c, p in enumerate(PARTS) if (solo & cal.truth[:, c]).any()}
    return out


def collect(emb: Embedder, data: Sequence[Path], split: str, seconds: float, per_track: int,
            seed: int, max_tracks: int | None = None) -> CalibrationSet:
    """The calibration inputs of ``split`` of each dataset, embedded by ``emb``."""
    sr = emb.audio.sample_rate
    cfg = TrainConfig()
    rng = np.random.default_rng(seed)
    norms, truth, kind = [], [], []
    for root in data:
        ds = SlakhDataset(root, split, sample_rate=sr)
        idx = range(len(ds)) if not max_tracks else range(min(max_tracks, len(ds)))
        log.info("%s/%s: %d tracks", Path(root).name, split, len(idx))
        for i in idx:
            clips, t, k = build_inputs([ds.load_parts(i)], sr, seconds, per_track, rng,
                                       cfg.level_db, cfg.gain_db, ACTIVITY_THRESHOLD_DB)
            e = emb.embed_clips(clips)
            if not np.isfinite(e).all():
                raise ValueError("the model produced non-finite embeddings")
            norms.append(presence_logits(e, np.zeros(N_PARTS)))  # log ||f_j||, the presence rule's
            truth.append(t)
            kind.append(k)
    return CalibrationSet(np.concatenate(norms), np.concatenate(truth), np.concatenate(kind))


def calibrate(cal: CalibrationSet, fallback: Sequence[float] | None = None) -> np.ndarray:
    """(5,) biases: -(best threshold) per part. A part that never plays (or always plays) in
    the calibration inputs keeps its ``fallback`` bias (ValueError without one)."""
    out = []
    for c, p in enumerate(PARTS):
        y = cal.truth[:, c]
        if (y.all() or not y.any()) and fallback is not None:
            log.warning("%s: %s in every calibration input; keeping its bias %.3f", p,
                        "plays" if y.all() else "silent", fallback[c])
            out.append(float(fallback[c]))
            continue
        out.append(-best_threshold(cal.log_norms[:, c], y)[0])
    return np.array(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="partwise-train calibrate",
        description="Fit each part's presence bias on the validation split of real-music "
                    "datasets (mixes, solo parts, subsets) and write a weights file with them.")
    ap.add_argument("weights", type=Path, help="weights file to calibrate (.safetensors + .json)")
    ap.add_argument("--data", type=Path, action="append", required=True,
                    help="dataset root in the Slakh layout (repeatable)")
    ap.add_argument("--out", type=Path, required=True, help="calibrated weights file to write")
    ap.add_argument("--split", default="validation", choices=("train", "validation", "test"))
    ap.add_argument("--seconds", type=float, default=5.0, help="window length (default 5 s)")
    ap.add_argument("--per-track", type=int, default=6, help="windows per track (default 6)")
    ap.add_argument("--max-tracks", type=int, help="at most this many tracks per dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score-split", choices=("train", "validation", "test"),
                    help="also score the trained and the calibrated biases on this split "
                         "(held out from the fit), into the card and the printout")
    ap.add_argument("--device")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        if args.out.resolve() == args.weights.resolve():
            raise ValueError(f"{args.out}: write the calibrated model to a new file")
        emb = Embedder.from_file(args.weights, device=args.device)
        cal = collect(emb, args.data, args.split, args.seconds, args.per_track, args.seed,
                      args.max_tracks)
        trained = np.asarray(emb.norm_bias if emb.norm_bias is not None else [0.0] * N_PARTS,
                             np.float64)
        bias = calibrate(cal, trained)
        before, after = presence_scores(cal, trained), presence_scores(cal, bias)
        card = dict(read_card(args.weights).get("card", {}))
        card["norm_bias_trained"] = card.get("norm_bias_trained", trained.tolist())
        card["norm_bias"] = [round(float(b), 5) for b in bias]
        card["presence_calibration"] = {
            "data": [f"{Path(d).name}/{args.split}" for d in args.data],
            "seconds": args.seconds, "inputs": {k: int((cal.kind == k).sum()) for k in KINDS},
            "balanced_accuracy_trained_bias": before, "balanced_accuracy_calibrated": after,
        }
        held = None
        if args.score_split:
            if args.score_split == args.split:
                raise ValueError("--score-split must differ from --split (it is the held-out check)")
            test = collect(emb, args.data, args.score_split, args.seconds, args.per_track,
                           args.seed + 1, args.max_tracks)
            held = (presence_scores(test, trained), presence_scores(test, bias))
            card["presence_calibration"]["held_out"] = {
                "data": [f"{Path(d).name}/{args.score_split}" for d in args.data],
                "inputs": {k: int((test.kind == k).sum()) for k in KINDS},
                "balanced_accuracy_trained_bias": held[0], "balanced_accuracy_calibrated": held[1]}
        save_weights(args.out, emb.model, emb.spec, card=card)
    except (WeightsError, OSError, ValueError) as e:
        log.error("%s", e)
        return 1
    for p in PARTS:
        print(f"{p:7s} bias {float(trained[PARTS.index(p)]):+.3f} -> {float(bias[PARTS.index(p)]):+.3f}"
              f"  balanced accuracy (all inputs) {before[p]['all']:.1f} -> {after[p]['all']:.1f} %"
              f"  solo {before[p]['solo']:.1f} -> {after[p]['solo']:.1f} %")
    if held is not None:
        print(f"held out ({args.score_split}), balanced accuracy trained -> calibrated biases:")
        for p in PARTS:
            print(f"{p:7s} all inputs {held[0][p]['all']:.1f} -> {held[1][p]['all']:.1f} %"
                  f"  mix {held[0][p]['mix']:.1f} -> {held[1][p]['mix']:.1f} %"
                  f"  solo {held[0][p]['solo']:.1f} -> {held[1][p]['solo']:.1f} %")
    print(f"{args.out}")
    return 0
