"""``partwise-train average A B [...] --out FILE``: the weighted mean of several exported weights
files of one model, as a shippable weights file.

Runs that start from the same weights and train on with different settings stay close enough
in weight space that the mean of their weights is itself a model, and can be better than each
(a "model soup"; docs/training.md measures some). Every floating-point tensor
(weights and batch-norm statistics) is averaged; integer counters come from the first file.
The presence biases the runs trained (``norm_bias_trained``, else ``norm_bias``) are averaged
too, and any presence calibration is dropped: calibrate the result again.

A network without the pitch channel averages with one that has it (a run started from it by
``fit --pitch``): it is first lifted into the two-channel network computing the same embedding
(zero weight on the pitch rows), and the result takes the spec and card of the first file that
reads pitch.

The card records each parent (name, checksum, share, training seconds) in place of the start
weights one run names (``init``), and the union of their chunks of training. Its
``training.seconds`` is the compute behind the result when the parents form one line of descent
(each one's chunks begin with the chunks of those before it), so nothing is counted twice; for
runs that diverged it is left out.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from model.network import CSN
from model.weights import WeightsError, load_weights, save_weights
from trainer.clitools import setup_logging
from trainer.export import report_summary
from trainer.widen import pitch_lifted, rechannel_state

log = logging.getLogger(__name__)


def _shares(n: int, mix: Sequence[float] | None) -> list[float]:
    if mix is None:
        return [1.0 / n] * n
    if len(mix) != n:
        raise ValueError(f"--mix has {len(mix)} shares for {n} weights files")
    if any(not math.isfinite(m) or m < 0 for m in mix) or sum(mix) <= 0:
        raise ValueError(f"--mix shares must be non-negative with a positive sum, not {list(mix)}")
    total = sum(mix)
    return [m / total for m in mix]


def _trained(card: dict) -> dict:
    """A card's record of its training (empty when it has none)."""
    return card.get("training") or {}


def _training(cards: list[dict]) -> dict:
    """Union of the parents' chunks (first seen first); total seconds along one line of descent."""
    runs = [list(_trained(c).get("chunks") or []) for c in cards]
    seen, chunks = set(), []
    for run in runs:
        for ch in run:
            key = json.dumps(ch, sort_keys=True)
            if key not in seen:
                seen.add(key)
                chunks.append(ch)
    order = sorted(range(len(cards)), key=lambda i: len(runs[i]))
    line = all(runs[b][:len(runs[a])] == runs[a] for a, b in zip(order, order[1:], strict=False))
    training: dict = {"chunks": chunks}
    last = _trained(cards[order[-1]]).get("seconds")
    if line and last is not None:
        training["seconds"] = last
    else:
        log.warning("the runs averaged diverged (or a card lacks its training time): the card "
                    "keeps each one's seconds, not a total")
    for key in ("device", "world_size"):
        values = {_trained(c).get(key) for c in cards} - {None}
        if len(values) == 1:
            training[key] = values.pop()
    return training


def average(paths: Sequence[Path], out: Path, mix: Sequence[float] | None = None,
            reports: Sequence[Path] = ()) -> str:
    """Write the weighted mean of ``paths`` to ``out`` with its card; returns the sha256."""
    if len(paths) < 2:
        raise ValueError("average needs at least two weights files")
    shares = _shares(len(paths), mix)
    ws = [load_weights(p) for p in paths]
    # a network without the pitch channel is lifted into one with it, computing the same
    # function (trainer.widen.rechannel_state): a run started from it by fit --pitch averages
    # with its start; the result takes the spec and card of the first file that reads pitch
    top = max(range(len(ws)), key=lambda i: ws[i].spec.net.channels)
    spec = ws[top].spec
    states = []
    for p, w in zip(paths, ws, strict=True):
        state = w.model.state_dict()
        if w.spec.net.channels < spec.net.channels and pitch_lifted(w.spec, spec) == spec:
            state = rechannel_state(state, w.spec.net, spec.net.channels)
            log.info("%s: no pitch channel; averaged as the same network with zero weight on it", p)
        elif w.spec.to_dict() != spec.to_dict():
            raise WeightsError(f"{p}: its model spec {w.spec.to_dict()} is not that of "
                               f"{paths[top]} ({spec.to_dict()}); only one model's weights can "
                               "be averaged")
        states.append(state)
    mean = {}
    for k, first in states[0].items():
        if first.is_floating_point():
            mean[k] = sum(s * st[k].to(torch.float64) for s, st in zip(shares, states, strict=True)).to(first.dtype)
        else:
            mean[k] = first.clone()
    net = CSN(spec.net)
    net.load_state_dict(mean)

    cards = [w.card for w in ws]
    card = {k: v for k, v in cards[top].items()
            if k not in ("val", "metrics", "evaluation", "presence_calibration", "norm_bias",
                         "norm_bias_trained", "training", "epoch_note", "average", "init")}
    biases = [c.get("norm_bias_trained") or c.get("norm_bias") for c in cards]
    if all(b is not None and len(b) == len(biases[0]) for b in biases):
        card["norm_bias"] = [sum(s * b[i] for s, b in zip(shares, biases, strict=True)) for i in range(len(biases[0]))]
    else:
        log.warning("not every file has trained presence biases: the result has none (calibrate it)")
    card["average"] = [{"weights": n, "sha256": w.sha256, "share": round(s, 6),
                        "seconds": _trained(w.card).get("seconds")}
                       for n, w, s in zip(_labels(paths), ws, shares, strict=True)]
    card["training"] = _training(cards)
    if reports:
        card["evaluation"] = dict(report_summary(d) for d in reports)
    return save_weights(out, net, spec, card=card)


def _labels(paths: Sequence[Path]) -> list[str]:
    """How the card names each averaged file: its file name, or, where two files share one
    (every run exports ``last.safetensors``), the run folder and the file name."""
    names = [Path(p).name for p in paths]
    return [f"{Path(p).parent.name}/{n}" if names.count(n) > 1 else n
            for p, n in zip(paths, names, strict=True)]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="partwise-train average",
                                 description="Write the weighted mean of exported weights files of one "
                                             "model (runs from the same start) as NAME.safetensors + NAME.json.")
    ap.add_argument("weights", type=Path, nargs="+", help="exported weights files (.safetensors), two or more")
    ap.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    ap.add_argument("--mix", type=lambda s: [float(x) for x in s.split(",")], default=None,
                    help="shares, comma-separated, one per file (default: equal)")
    ap.add_argument("--report", type=Path, action="append", default=[],
                    help="an evaluation report folder whose key figures go into the card (repeatable)")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        digest = average(args.weights, args.out, args.mix, args.report)
    except (WeightsError, OSError, ValueError) as e:
        log.error("%s", e)
        return 1
    print(f"{args.out} sha256={digest}")
    return 0
