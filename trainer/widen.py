"""``partwise-train widen RUN --out NEW --widths ...``: a run's main stage, continued by a wider
network that starts out computing exactly what the trained one computes.

A capacity change costs a CPU-only project days if every width is trained from scratch. Widening
a trained network (Net2Net's idea, Chen et al. 2016) keeps what it learned: every old channel
keeps its weights; each new channel gets freshly initialised incoming weights, and every weight
*from* a new channel into an old one (the next convolution, or the embedding layer) starts at
zero, so the wider network's embedding equals the old one's until training moves those weights.
The gradient on them is not zero (the new channels' activations are not), so the new channels
join in from the first step.

``--n_mels`` changes the front end the same way: the filters are kept and the embedding layer
reads the new number of frequency rows (:func:`remel_state`). That start is approximate, not
exact; the individual networks are copied as they are (they have done their work once a run is
in its main stage).

The new run folder is a copy of RUN (config, log, chunks of training, individual networks,
pre-training) with the main stage's checkpoint and the pre-trained weights widened, the widths
(and mel bands) in the config replaced, and the main stage reopened. The optimizer starts
afresh (its moments have the old shapes), and so do the step count and the stage's clock, so
the warm-up runs again and the rate then follows the time budget given to the resumed run over
that run alone. An export of the new run lists RUN's chunks of training before its own.
Continue with ``partwise-train fit --data ... --out NEW --resume --time_budget_min=...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from model.network import CSN, ModelSpec, NetConfig
from model.weights import load_weights, save_weights
from trainer.clitools import setup_logging
from trainer.config import TrainConfig
from trainer.loop import atomic_torch_save

log = logging.getLogger(__name__)

# what the new run folder takes over unchanged from the old one
_COPIED = ("individual", "log.jsonl", "chunks.jsonl", "pretrain.done")


def _conv_names(n_blocks: int) -> list[str]:
    """State-dict prefixes of the 10 conv units (conv, batch norm), in order: the encoder is
    [unit, unit, pool] per block."""
    return [f"encoder.{3 * b + i}" for b in range(n_blocks) for i in (0, 1)]


def _check_widths(old: NetConfig, widths: Sequence[int]) -> NetConfig:
    """The wider network's config; ValueError if ``widths`` is not 5 counts, none narrower."""
    new = replace(old, widths=tuple(widths))
    if any(w < o for w, o in zip(new.widths, old.widths, strict=True)):
        raise ValueError(f"widths {new.widths} must not be narrower than {old.widths} anywhere")
    return new


def widen_state(state: dict[str, torch.Tensor], old: NetConfig, widths: Sequence[int],
                seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of a CSN with ``widths`` whose function equals ``state``'s (a CSN with
    ``old``'s widths), in training and in evaluation mode."""
    widths = tuple(int(w) for w in widths)
    new_cfg = _check_widths(old, widths)
    torch.manual_seed(seed)
    fresh = CSN(new_cfg).state_dict()  # new channels' default initialisation
    out = {k: v.clone() for k, v in fresh.items()}
    chans = [w for w in old.widths for _ in (0, 1)]
    new_chans = [w for w in widths for _ in (0, 1)]
    c_in_old, c_in_new = old.channels, old.channels
    for name, c_old, c_new in zip(_conv_names(len(widths)), chans, new_chans, strict=True):
        w_old = state[f"{name}.0.weight"]
        w = out[f"{name}.0.weight"]
        w[:c_old, :c_in_old] = w_old
        w[:c_old, c_in_old:c_in_new] = 0.0  # new inputs do not reach old channels (yet)
        for k in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.1.{k}"][:c_old] = state[f"{name}.1.{k}"]
        out[f"{name}.1.num_batches_tracked"] = state[f"{name}.1.num_batches_tracked"].clone()
        c_in_old, c_in_new = c_old, c_new
    # the embedding layer reads channel c at frequency row f as feature c * rows + f
    rows = old.n_mels // 32
    fc_old, fc = state["fc.weight"], out["fc.weight"]
    fc.zero_()
    for k in range(old.stats):  # mean features, then standard deviations
        fc[:, k * c_in_new * rows: k * c_in_new * rows + c_in_old * rows] = \
            fc_old[:, k * c_in_old * rows: (k + 1) * c_in_old * rows]
    out["fc.bias"] = state["fc.bias"].clone()
    return out


def repool_state(state: dict[str, torch.Tensor], old: NetConfig, pool: str) -> dict[str, torch.Tensor]:
    """The state dict of ``old``'s network with ``pool="meanstd"``, computing exactly what
    ``state`` (a mean-pooled network) computes: the embedding layer keeps its weights on the
    time averages and gets zero weights on the standard deviations, which training then moves
    (their gradient is not zero). ValueError for any other change of pooling."""
    if (old.pool, pool) != ("mean", "meanstd"):
        raise ValueError(f"pooling {old.pool!r} -> {pool!r}: only mean -> meanstd keeps the function")
    out = dict(state)
    fc = state["fc.weight"]
    out["fc.weight"] = torch.cat([fc, torch.zeros_like(fc)], dim=1)
    return out


def rechannel_state(state: dict[str, torch.Tensor], old: NetConfig, channels: int
                    ) -> dict[str, torch.Tensor]:
    """The state dict of ``old``'s network reading ``channels`` input channels (the mel rows
    first, as :class:`model.audio.LogMel` stacks them), computing exactly what ``state``
    computes: the first convolution keeps its weights on the mel channel and gets zero weights
    on the new ones, which training then moves (their gradient is not zero). ValueError for
    fewer channels than ``old`` reads."""
    if channels < old.channels:
        raise ValueError(f"input channels {old.channels} -> {channels}: dropping channels "
                         "does not keep the function")
    out = dict(state)
    w = state["encoder.0.0.weight"]  # (width, channels, k, k)
    pad = w.new_zeros(w.shape[0], channels - w.shape[1], *w.shape[2:])
    out["encoder.0.0.weight"] = torch.cat([w, pad], dim=1)
    return out


def reset_blocks(net: CSN, n_blocks: int, seed: int = 0) -> CSN:
    """Draw the first ``n_blocks`` conv pairs of ``net`` afresh (in place; returns ``net``): each
    convolution gets PyTorch's default initialisation and each batch norm unit scale, zero shift
    and fresh running statistics, drawn from ``seed`` without touching the global generator. The
    blocks after them keep their weights. A start for a trained trunk whose first layers must
    learn their input anew (a pitch channel that a trained first layer would hold at zero)."""
    if not 0 <= n_blocks <= len(net.cfg.widths):
        raise ValueError(f"reset_blocks: the network has {len(net.cfg.widths)} conv pairs, "
                         f"got {n_blocks}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for unit in list(net.encoder)[: 3 * n_blocks]:
            for m in unit.modules():
                if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
                    m.reset_parameters()
    return net


def pitch_lifted(spec: ModelSpec, target: ModelSpec) -> ModelSpec:
    """``spec`` as the network :func:`rechannel_state` lifts it into for ``target``: where
    ``spec`` reads fewer input channels than ``target``, the pitch settings of ``target`` (the
    same function, zero weight on the new rows); otherwise ``spec`` itself."""
    if spec.net.channels >= target.net.channels:
        return spec
    return replace(spec, audio=replace(spec.audio, pitch=target.audio.pitch),
                   net=replace(spec.net, channels=target.net.channels,
                               pitch_gain=target.net.pitch_gain))


def remel_state(state: dict[str, torch.Tensor], old: NetConfig, n_mels: int) -> dict[str, torch.Tensor]:
    """The state dict of ``old``'s network for spectrograms of ``n_mels`` bands (in rows of 32,
    a multiple or a divisor of ``old``'s), a start for training on finer (or coarser) rows.

    The convolutions have no frequency extent of their own, so every weight is kept; only the
    embedding layer reads a different number of frequency rows (``n_mels // 32``). Each new row
    takes the weights of the old row that covers its frequencies, divided by the number of new
    rows that share it (or, for coarser rows, the sum of the old rows it merges): were the
    encoder's output rows equal in each such group, the embedding would be the old one. They are
    not: the filters now meet a spectrum whose features lie twice as many bands apart, so the
    start is an approximation that training has to refine (unlike :func:`widen_state`, which is
    exact). From 64 to 128 bands on the shipped network, the subspaces' embeddings of POP909
    mixes kept a mean cosine of 0.76-0.91 with the old ones."""
    rows_old, rows_new = _check_mels(old, n_mels)
    out = {k: v.clone() for k, v in state.items()}
    fc = state["fc.weight"]
    stats = old.stats  # mean features, then standard deviations
    per_row = fc.reshape(fc.shape[0], stats, old.widths[-1], rows_old)
    if rows_new >= rows_old:
        k = rows_new // rows_old
        per_row = per_row.repeat_interleave(k, dim=3) / k
    else:  # coarser rows: each new row stands for the old rows it merges
        per_row = per_row.reshape(fc.shape[0], stats, old.widths[-1], rows_new,
                                  rows_old // rows_new).sum(dim=4)
    out["fc.weight"] = per_row.reshape(fc.shape[0], stats * old.widths[-1] * rows_new).contiguous()
    return out


def _check_mels(old: NetConfig, n_mels: int) -> tuple[int, int]:
    """The frequency rows (old, new) the embedding layer reads; ValueError if ``n_mels`` is no
    network's band count or its rows cannot be mapped onto ``old``'s."""
    replace(old, n_mels=n_mels)  # validates
    rows_old, rows_new = old.n_mels // 32, n_mels // 32
    if rows_new % rows_old and rows_old % rows_new:
        raise ValueError(f"n_mels {n_mels} and {old.n_mels}: one must be a multiple of the other")
    return rows_old, rows_new


def reshape_state(state: dict[str, torch.Tensor], old: NetConfig, widths: Sequence[int],
                  n_mels: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], NetConfig]:
    """``state`` (of ``old``'s network) widened to ``widths`` (:func:`widen_state`), then
    re-banded to ``n_mels`` (:func:`remel_state`) where that differs; with the new config."""
    state = widen_state(state, old, widths, seed)
    cfg = replace(old, widths=tuple(widths))
    if n_mels != old.n_mels:
        state = remel_state(state, cfg, n_mels)
        cfg = replace(cfg, n_mels=n_mels)
    return state, cfg


def widen_model(model: CSN, widths: Sequence[int], seed: int = 0, n_mels: int | None = None) -> CSN:
    """A wider copy of ``model`` with the same function (and, with ``n_mels``, re-banded as
    :func:`remel_state` does)."""
    state, cfg = reshape_state(model.state_dict(), model.cfg, widths, n_mels or model.cfg.n_mels, seed)
    wide = CSN(cfg)
    wide.load_state_dict(state)
    return wide


def widen_run(run: Path, out: Path, widths: Sequence[int] | None = None, n_mels: int | None = None) -> None:
    """Write the widened copy of ``run`` into ``out`` (see the module's docstring)."""
    ckpt = run / "ckpt-main.pt"
    for need in (run / "config.json", ckpt):
        if not need.is_file():
            raise ValueError(f"{need}: not found (widen continues a run's main stage)")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: run folder is not empty")
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    old = cfg.model_spec().net
    widths = tuple(int(w) for w in widths) if widths else old.widths
    n_mels = n_mels or old.n_mels
    if widths == old.widths and n_mels == old.n_mels:
        raise ValueError(f"{run}: already has widths {','.join(map(str, widths))} and "
                         f"{n_mels} mel bands; nothing to change")
    _check_widths(old, widths)
    _check_mels(old, n_mels)
    out.mkdir(parents=True, exist_ok=True)
    for name in _COPIED:
        src = run / name
        if src.is_dir():
            shutil.copytree(src, out / name)
        elif src.is_file():
            shutil.copy2(src, out / name)
    cfg.widths, cfg.n_mels = widths, n_mels
    cfg.save(out / "config.json")

    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    blob["modules"]["net"], _ = reshape_state(blob["modules"]["net"], old, widths, n_mels, cfg.seed)
    blob.pop("opt", None)
    blob.pop("ema", None)  # a moving average of the old shapes starts again from the widened weights
    state = blob["state"]
    log.info("widening %s at epoch %d: widths %s -> %s, mel bands %d -> %d", run.name,
             state["epoch"], ",".join(map(str, old.widths)), ",".join(map(str, widths)),
             old.n_mels, n_mels)
    # the new network's own schedule: its warm-up, then a rate that follows the time budget
    # given to the resumed run from its start (the old run's seconds would have spent it)
    state.update(done=False, bad_epochs=0, best=-math.inf, step=0, seconds=0.0)
    blob["widened_from"] = list(old.widths)
    blob["n_mels_from"] = old.n_mels
    blob["config"] = cfg.to_dict()
    atomic_torch_save(blob, out / "ckpt-main.pt")

    pre = run / "pretrained.safetensors"
    if pre.is_file():
        w = load_weights(pre)
        save_weights(out / "pretrained.safetensors", widen_model(w.model, widths, cfg.seed, n_mels),
                     cfg.model_spec(), card={**w.card, "widened_from": list(old.widths),
                                             "n_mels_from": old.n_mels})


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="partwise-train widen",
        description="Copy a run whose main stage has a checkpoint into a new run folder with a "
                    "wider network that computes the same embedding; continue it with "
                    "'partwise-train fit --resume'.")
    ap.add_argument("run", type=Path, help="run folder with ckpt-main.pt")
    ap.add_argument("--out", type=Path, required=True, help="new run folder (empty)")
    ap.add_argument("--widths",
                    help="5 comma-separated channel counts, none narrower than the run's "
                         "(default: the run's)")
    ap.add_argument("--n_mels", type=int,
                    help="mel bands of the new network, a multiple or divisor of the run's "
                         "(default: the run's); an approximate start, see remel_state")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        if not args.widths and not args.n_mels:
            raise ValueError("nothing to change: pass --widths, --n_mels or both")
        widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else None
        widen_run(args.run, args.out, widths, args.n_mels)
    except (ValueError, OSError, KeyError) as e:
        log.error("%s", e)
        return 1
    old = TrainConfig.from_dict(json.loads((args.run / "config.json").read_text())).model_spec().net
    new = TrainConfig.from_dict(json.loads((args.out / "config.json").read_text())).model_spec().net
    print(f"{args.out}: widths {','.join(map(str, new.widths))}, {new.n_mels} mel bands, "
          f"{count_params(CSN(old)):,} -> {count_params(CSN(new)):,} parameters")
    return 0
