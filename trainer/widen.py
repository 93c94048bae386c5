"""``partwise-train widen RUN --out NEW --widths ...``: a run's main stage, continued by a wider
network that starts out computing exactly what the trained one computes.

A capacity change costs a CPU-only project days if every width is trained from scratch. Widening
a trained network (Net2Net's idea, Chen et al. 2016) keeps what it learned: every old channel
keeps its weights; each new channel gets freshly initialised incoming weights, and every weight
*from* a new channel into an old one (the next convolution, or the embedding layer) starts at
zero, so the wider network's embedding equals the old one's until training moves those weights.
The gradient on them is not zero (the new channels' activations are not), so the new channels
join in from the first step.

The new run folder is a copy of RUN (config, log, individual networks, pre-training) with the
main stage's checkpoint and the pre-trained weights widened, the widths in the config replaced,
and the main stage reopened. The optimizer starts afresh (its moments have the old shapes), and
so does the step count, so the warm-up runs again before the rate follows the time budget.
Continue with ``partwise-train fit --data ... --out NEW --resume --time_budget_min=...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from model.network import CSN, NetConfig
from model.weights import load_weights, save_weights
from trainer.clitools import setup_logging
from trainer.config import TrainConfig
from trainer.loop import atomic_torch_save

log = logging.getLogger(__name__)

# what the new run folder takes over unchanged from the old one
_COPIED = ("individual", "log.jsonl", "pretrain.done")


def _conv_names(n_blocks: int) -> list[str]:
    """State-dict prefixes of the 10 conv units (conv, batch norm), in order: the encoder is
    [unit, unit, pool] per block."""
    return [f"encoder.{3 * b + i}" for b in range(n_blocks) for i in (0, 1)]


def _check_widths(old: NetConfig, widths: Sequence[int]) -> NetConfig:
    """The wider network's config; ValueError if ``widths`` is not 5 counts, none narrower."""
    new = NetConfig(widths=tuple(widths), out_dim=old.out_dim, n_mels=old.n_mels, kernel=old.kernel)
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
    c_in_old, c_in_new = 1, 1
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
    fc[:, : c_in_old * rows] = fc_old
    out["fc.bias"] = state["fc.bias"].clone()
    return out


def widen_model(model: CSN, widths: Sequence[int], seed: int = 0) -> CSN:
    """A wider copy of ``model`` with the same function."""
    cfg = model.cfg
    wide = CSN(NetConfig(widths=tuple(widths), out_dim=cfg.out_dim, n_mels=cfg.n_mels, kernel=cfg.kernel))
    wide.load_state_dict(widen_state(model.state_dict(), cfg, widths, seed))
    return wide


def widen_run(run: Path, out: Path, widths: Sequence[int]) -> None:
    """Write the widened copy of ``run`` into ``out`` (see the module's docstring)."""
    ckpt = run / "ckpt-main.pt"
    for need in (run / "config.json", ckpt):
        if not need.is_file():
            raise ValueError(f"{need}: not found (widen continues a run's main stage)")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: run folder is not empty")
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    old = cfg.model_spec().net
    if tuple(widths) == old.widths:
        raise ValueError(f"{run}: already has widths {','.join(map(str, widths))}; nothing to widen")
    _check_widths(old, widths)
    out.mkdir(parents=True, exist_ok=True)
    for name in _COPIED:
        src = run / name
        if src.is_dir():
            shutil.copytree(src, out / name)
        elif src.is_file():
            shutil.copy2(src, out / name)
    cfg.widths = tuple(int(w) for w in widths)
    cfg.save(out / "config.json")

    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    blob["modules"]["net"] = widen_state(blob["modules"]["net"], old, widths, cfg.seed)
    blob.pop("opt", None)
    state = blob["state"]
    log.info("widening %s at epoch %d: widths %s -> %s", run.name, state["epoch"],
             ",".join(map(str, old.widths)), ",".join(map(str, widths)))
    state.update(done=False, bad_epochs=0, best=-math.inf, step=0)
    blob["widened_from"] = list(old.widths)
    blob["config"] = cfg.to_dict()
    atomic_torch_save(blob, out / "ckpt-main.pt")

    pre = run / "pretrained.safetensors"
    if pre.is_file():
        w = load_weights(pre)
        save_weights(out / "pretrained.safetensors", widen_model(w.model, widths, cfg.seed),
                     cfg.model_spec(), card={**w.card, "widened_from": list(old.widths)})


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
    ap.add_argument("--widths", required=True,
                    help="5 comma-separated channel counts, none narrower than the run's")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        widths = tuple(int(w) for w in args.widths.split(","))
        widen_run(args.run, args.out, widths)
    except (ValueError, OSError, KeyError) as e:
        log.error("%s", e)
        return 1
    old = TrainConfig.from_dict(json.loads((args.run / "config.json").read_text()))
    n_old = count_params(CSN(old.model_spec().net))
    n_new = count_params(CSN(NetConfig(widths=widths, out_dim=old.model_spec().net.out_dim,
                                       n_mels=old.n_mels)))
    print(f"{args.out}: widths {','.join(map(str, widths))}, {n_old:,} -> {n_new:,} parameters")
    return 0
