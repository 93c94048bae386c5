"""``partwise-train fit``: individual networks -> pre-training -> CSN training (paper sec. 3-4.1).

Reads top to bottom: setup, the three stages, each an epoch loop with validation, atomic
checkpoints and resume. CUDA with bf16 autocast when present, DDP when ``torchrun`` sets RANK,
CPU otherwise. Only rank 0 logs, validates and saves.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from model.audio import log_mel
from model.losses import (
    NormLoss,
    masked_triplet_loss,
    pretrain_loss,
    pretrain_target,
    spread_loss,
    triplet_loss,
)
from model.network import CSN
from model.parts import N_PARTS, PARTS
from model.weights import load_weights, save_weights
from trainer.bank import StemBank
from trainer.clitools import setup_logging
from trainer.config import PRESETS, TrainConfig, apply_overrides, resolve
from trainer.sampling import Triplet, TripletSampler, flatten, individual_triplets

log = logging.getLogger(__name__)
STAGES = ("individual", "pretrain", "main")


# ----------------------------------------------------------------------------- setup
@dataclass
class Env:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_env(cfg: TrainConfig) -> Env:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise RuntimeError("device=cuda asked for, but CUDA is not available")
    if "RANK" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", 0))
        dist.init_process_group("nccl" if want_cuda else "gloo")
        device = torch.device(f"cuda:{local}") if want_cuda else torch.device("cpu")
        if want_cuda:
            torch.cuda.set_device(device)
        return Env(device, rank, world, local)
    return Env(torch.device("cuda" if want_cuda else "cpu"))


def lr_at(step: int, total: int, base: float, warmup: int, time_frac: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10 % of ``base``, over the steps or over the time
    budget (``time_frac``: share of it spent), whichever runs out first."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_frac))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def atomic_torch_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- one stage
@dataclass
class StageState:
    epoch: int = 0
    step: int = 0
    best: float = -math.inf
    bad_epochs: int = 0
    seconds: float = 0.0
    done: bool = False
    history: list = field(default_factory=list)


class Stage:
    """An epoch loop with validation, early stopping, checkpoints and resume."""

    def __init__(self, run: Run, name: str, modules: dict[str, nn.Module], lr: float,
                 epochs: int, steps: int, budget_s: float, warmup: int = 0):
        self.run, self.name = run, name
        self.modules = modules
        params = [p for m in modules.values() for p in m.parameters()]
        self.opt = torch.optim.Adam(params, lr=lr, weight_decay=run.cfg.weight_decay)
        self.lr, self.epochs, self.steps, self.budget_s, self.warmup = lr, epochs, steps, budget_s, warmup
        self.ckpt = run.out / f"ckpt-{name.replace(':', '-')}.pt"
        self.state = StageState()
        if self.ckpt.exists():
            self._load()

    def _load(self) -> None:
        blob = torch.load(self.ckpt, map_location=self.run.env.device, weights_only=True)
        for k, m in self.modules.items():
            _unwrap(m).load_state_dict(blob["modules"][k])
        self.opt.load_state_dict(blob["opt"])
        self.state = StageState(**blob["state"])
        log.info("%s: resumed at epoch %d, step %d", self.name, self.state.epoch, self.state.step)

    def save(self) -> None:
        if not self.run.env.main:
            return
        blob = {"modules": {k: _unwrap(m).state_dict() for k, m in self.modules.items()},
                "opt": self.opt.state_dict(), "state": self.state.__dict__,
                "config": self.run.cfg.to_dict()}
        atomic_torch_save(blob, self.ckpt)

    def train(self, step_fn: Callable[[np.random.Generator], dict[str, float]],
              val_fn: Callable[[], dict[str, float]], score_key: str) -> StageState:
        """Run epochs until done, early stop, time budget, or this process's epoch cap."""
        cfg, env, st = self.run.cfg, self.run.env, self.state
        total = self.epochs * self.steps
        stage_id = STAGES.index(self.name.split(":")[0])
        sub = PARTS.index(self.name.split(":")[1]) if ":" in self.name else 0
        while not st.done and st.epoch < self.epochs:
            rng = np.random.default_rng([cfg.seed, stage_id, sub, st.epoch, env.rank])
            for m in self.modules.values():
                m.train()
            t0, sums, timing = time.perf_counter(), {}, {"data_s": 0.0, "compute_s": 0.0}
            bar = tqdm(range(self.steps), desc=f"{self.name} {st.epoch + 1}/{self.epochs}",
                       disable=not env.main or not self.run.progress, leave=False)
            for _ in bar:
                spent = (st.seconds + time.perf_counter() - t0) / self.budget_s if self.budget_s else 0.0
                for g in self.opt.param_groups:
                    g["lr"] = lr_at(st.step, total, self.lr, self.warmup, spent)
                out = step_fn(rng)
                for k, v in out.items():
                    if k in timing:
                        timing[k] += v
                    else:
                        sums[k] = sums.get(k, 0.0) + v
                st.step += 1
                bar.set_postfix(loss=f"{out['loss']:.4f}")
            st.epoch += 1
            st.seconds += time.perf_counter() - t0
            row = {"stage": self.name, "epoch": st.epoch, "step": st.step,
                   "lr": self.opt.param_groups[0]["lr"],
                   **{k: v / self.steps for k, v in sums.items()}, **timing,
                   "epoch_s": time.perf_counter() - t0}
            if env.main:
                for m in self.modules.values():
                    m.eval()
                row.update(val_fn())
                score = row[score_key]
                if score > st.best:
                    st.best, st.bad_epochs = score, 0
                    self.run.on_best(self.name, self.modules, row)
                else:
                    st.bad_epochs += 1
                self.run.log(row)
            st.history.append({k: row[k] for k in row if isinstance(row[k], (int, float))})
            if st.bad_epochs >= cfg.patience:
                log.info("%s: early stop after %d epochs without improvement", self.name, st.bad_epochs)
                st.done = True
            if self.budget_s and st.seconds >= self.budget_s:
                log.info("%s: time budget of %.0f s spent", self.name, self.budget_s)
                st.done = True
            if st.epoch >= self.epochs:
                st.done = True
            self.run.epochs_this_run += 1
            if st.done or st.epoch % cfg.ckpt_every == 0 or self.run.should_pause():
                self.save()
            if self.run.should_pause() and not st.done:
                raise Paused(self.name)
        return st


class Paused(Exception):
    """This process's epoch cap was reached; the run resumes from its checkpoint."""


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


# ----------------------------------------------------------------------------- the run
class Run:
    def __init__(self, cfg: TrainConfig, data: Path | Sequence[Path], out: Path, progress: bool = True):
        from trainer.data.dataset import SlakhDataset

        self.data = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
        self.cfg, self.out, self.progress = cfg, out, progress
        self.env = setup_env(cfg)
        self.epochs_this_run = 0
        out.mkdir(parents=True, exist_ok=True)
        (out / "individual").mkdir(exist_ok=True)
        torch.manual_seed(cfg.seed + self.env.rank)
        dev = self.env.device
        train = [SlakhDataset(d, "train", sample_rate=cfg.sample_rate) for d in self.data]
        val = [SlakhDataset(d, "validation", sample_rate=cfg.sample_rate) for d in self.data]
        for name, split in (("train", train), ("validation", val)):
            if sum(len(d) for d in split) < 4:
                roots = ", ".join(str(d) for d in self.data)
                raise ValueError(f"{roots}: the {name} split has {sum(len(d) for d in split)} "
                                 "tracks; at least 4 are needed")
        kw = dict(segment_seconds=cfg.segment_seconds, hop_seconds=cfg.hop_seconds, device=dev,
                  progress=progress and self.env.main)
        self.train = StemBank.from_datasets(train, max_tracks=cfg.max_tracks, **kw)
        self.val = StemBank.from_datasets(val, max_tracks=cfg.max_val_tracks, **kw)
        self.level = cfg.level_db or None
        per_dataset = [{"root": d.root.name, "train_tracks": len(d), "validation_tracks": len(v),
                        "sources": sorted({t.source for t in d.tracks}),
                        "fonts": sorted({t.font for t in d.tracks if t.font})}
                       for d, v in zip(train, val, strict=True)]
        self.summary = {
            "root": "+".join(d.name for d in self.data), "datasets": per_dataset,
            "train_tracks": len(self.train), "validation_tracks": len(self.val),
            "train_hours": round(sum(a.shape[1] for a in self.train.audio) / cfg.sample_rate / 3600, 3),
            "sources": sorted(set().union(*(e["sources"] for e in per_dataset))),
            "fonts": sorted(set().union(*(e["fonts"] for e in per_dataset))),
        }
        self.spec, self.ind_spec = cfg.model_spec(), cfg.individual_spec()
        self.audio = self.spec.audio
        if self.env.main:
            cfg.save(out / "config.json")
        self.amp = dev.type == "cuda" and cfg.amp
        self.target_center: torch.Tensor | None = None  # set by pre-training with pre_center

    # --- helpers
    def should_pause(self) -> bool:
        cap = self.cfg.max_epochs_this_run
        return bool(cap) and self.epochs_this_run >= cap

    def log(self, row: dict) -> None:
        log.info("%s", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in row.items()))
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def budget(self, stage: int, parts: int = 1) -> float:
        if not self.cfg.time_budget_min:
            return 0.0
        return self.cfg.time_budget_min * 60 * self.cfg.stage_share[stage] / parts

    def embed(self, net: nn.Module, clips: torch.Tensor) -> torch.Tensor:
        mel = log_mel(clips, self.audio)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            return net(mel).float()

    @torch.no_grad()
    def embed_eval(self, net: nn.Module, clips: torch.Tensor, batch: int = 64) -> torch.Tensor:
        return torch.cat([self.embed(net, clips[i:i + batch]) for i in range(0, len(clips), batch)])

    def wrap(self, m: nn.Module) -> nn.Module:
        m = m.to(self.env.device)
        if self.env.world > 1:
            m = nn.SyncBatchNorm.convert_sync_batchnorm(m) if self.env.device.type == "cuda" else m
            ids = [self.env.local_rank] if self.env.device.type == "cuda" else None
            m = nn.parallel.DistributedDataParallel(m, device_ids=ids)
        return m

    def on_best(self, stage: str, modules: dict[str, nn.Module], row: dict) -> None:
        net = _unwrap(modules["net"])
        if stage.startswith("individual:"):
            path = self.out / "individual" / f"{stage.split(':')[1]}.safetensors"
            save_weights(path, net, self.ind_spec, card={"stage": stage, "val": row})
        elif stage == "pretrain":
            save_weights(self.out / "pretrained.safetensors", net, self.spec, card={"val": row})
        else:
            bias = _unwrap(modules["norm"]).bias.detach().cpu().tolist() if "norm" in modules else None
            card = {"val": row, "norm_bias": bias, "data": self.summary}
            save_weights(self.out / "best.safetensors", net, self.spec, card=card)

    # --- stage 1: individual networks
    def individual(self) -> None:
        cfg = self.cfg
        for p, part in enumerate(PARTS):
            done = self.out / "individual" / f"{part}.done"
            if done.exists():
                continue
            net = self.wrap(CSN(self.ind_spec.net))
            stage = Stage(self, f"individual:{part}", {"net": net}, cfg.ind_lr, cfg.ind_epochs,
                          cfg.ind_steps, self.budget(0, N_PARTS))
            val_bank = self.val
            if self.val.index.has[:, p].sum() < 2:
                log.warning("%s is audible in fewer than 2 validation tracks; its individual "
                            "network is validated on fixed training triplets", part)
                val_bank = self.train
            val_trip = individual_triplets(val_bank.index, p, cfg.val_triplets // 2,
                                           np.random.default_rng([cfg.seed, 99, p]))

            def step(rng: np.random.Generator, net=net, p=p, stage=stage) -> dict[str, float]:
                t0 = time.perf_counter()
                trip = individual_triplets(self.train.index, p, cfg.ind_batch, rng)
                clips = self.train.clean([s for t in trip for s in t], p)
                t1 = time.perf_counter()
                emb = self.embed(net, clips).reshape(len(trip), 3, -1)
                loss = triplet_loss(emb[:, 0], emb[:, 1], emb[:, 2], cfg.margin)
                self._update(stage.opt, loss)
                return {"loss": loss.item(), "data_s": t1 - t0, "compute_s": time.perf_counter() - t1}

            def val(net=net, p=p, trip=val_trip, bank=val_bank) -> dict[str, float]:
                emb = self.embed_eval(_unwrap(net), bank.clean([s for t in trip for s in t], p))
                emb = emb.reshape(len(trip), 3, -1)
                d_ap = (emb[:, 0] - emb[:, 1]).norm(dim=1)
                d_an = (emb[:, 0] - emb[:, 2]).norm(dim=1)
                return {"val_acc": (d_ap < d_an).float().mean().item(),
                        "val_dim": effective_dim(emb.flatten(0, 1))}

            stage.train(step, val, "val_acc")
            if self.env.main:
                done.write_text(json.dumps(stage.state.history[-1] if stage.state.history else {}))
            self._barrier()

    def load_individual(self) -> list[nn.Module]:
        nets = []
        for part in PARTS:
            w = load_weights(self.out / "individual" / f"{part}.safetensors", self.env.device)
            nets.append(w.model.eval().requires_grad_(False))
        return nets

    # --- stage 2: pre-training (eq. 9)
    def pretrain(self) -> None:
        cfg = self.cfg
        if (self.out / "pretrain.done").exists():
            return
        ind = self.load_individual()
        net = self.wrap(CSN(self.spec.net))
        stage = Stage(self, "pretrain", {"net": net}, cfg.pre_lr, cfg.pre_epochs, cfg.pre_steps,
                      self.budget(1))
        pieces_fn = self._pretrain_pieces
        self.target_center = self._target_center(ind) if cfg.pre_center else None
        val_pieces = pieces_fn(self.val, cfg.val_triplets, np.random.default_rng([cfg.seed, 98]))
        val_clips, val_present = self.val.render(val_pieces, level_db=self.level)
        val_target = self._targets(ind, self.val, val_pieces, val_present)
        target_dims = {f"target_dim_{k[len('val_dim_'):]}": v
                       for k, v in subspace_dims(val_target, val_present).items()}
        log.info("pre-training targets, effective dimension per part on validation pieces: %s",
                 " ".join(f"{k[len('target_dim_'):]}={v:.2f}" for k, v in target_dims.items()))

        def step(rng: np.random.Generator) -> dict[str, float]:
            t0 = time.perf_counter()
            pieces = pieces_fn(self.train, cfg.pre_batch, rng)
            clips, present = self.train.render(pieces, self._gains(rng, len(pieces)), self.level)
            target = self._targets(ind, self.train, pieces, present)
            t1 = time.perf_counter()
            loss = pretrain_loss(self.embed(net, clips), target)
            self._update(stage.opt, loss)
            return {"loss": loss.item(), "data_s": t1 - t0, "compute_s": time.perf_counter() - t1}

        def val() -> dict[str, float]:
            emb = self.embed_eval(_unwrap(net), val_clips)
            mse = pretrain_loss(emb, val_target).item()
            return {"val_mse": mse, "val_score": -mse,
                    **subspace_dims(emb, val_present, norms=True), **target_dims}

        stage.train(step, val, "val_score")
        if self.env.main:
            (self.out / "pretrain.done").write_text("{}")
        self._barrier()

    def _pretrain_pieces(self, bank: StemBank, n: int, rng: np.random.Generator):
        """Dataset pieces (the paper), or pseudo pieces with made silences (``pre_pseudo``)."""
        from trainer.sampling import dataset_piece

        if self.cfg.pre_pseudo:
            sampler = TripletSampler(bank.index, pseudo=True, additional=False,
                                     same_tempo=self.cfg.same_tempo, keep_prob=self.cfg.keep_prob)
            return flatten(sampler.draw(max(1, n // 3), rng))[:n]
        out = []
        for t in rng.integers(0, len(bank), n):
            starts = np.concatenate(bank.index.active[t])
            out.append(dataset_piece(int(t), int(rng.choice(starts)) if len(starts) else 0))
        return out

    @torch.no_grad()
    def _targets(self, ind: Sequence[nn.Module], bank: StemBank, pieces, present) -> torch.Tensor:
        stems = bank.stems(pieces)  # (M, 5, win)
        outs = torch.stack([self.embed_eval(ind[j], stems[:, j]) for j in range(N_PARTS)], dim=1)
        return pretrain_target(outs, present, self.target_center)

    @torch.no_grad()
    def _target_center(self, ind: Sequence[nn.Module], n: int = 512) -> torch.Tensor:
        """(5, 128) mean output of each individual network over audible stems of ``n`` fixed
        training pieces (the same on every resume)."""
        pieces = self._pretrain_pieces(self.train, n, np.random.default_rng([self.cfg.seed, 96]))
        _, present = self.train.render(pieces, level_db=self.level)
        stems = self.train.stems(pieces)
        rows = []
        for j in range(N_PARTS):
            on = present[:, j] > 0
            out = self.embed_eval(ind[j], stems[on, j]) if on.any() else None
            rows.append(out.mean(0) if out is not None else torch.zeros(
                self.ind_spec.net.out_dim, device=self.env.device))
        center = torch.stack(rows)
        log.info("pre-training targets centred: |mean output| per part %s",
                 " ".join(f"{p}={v:.3g}" for p, v in zip(PARTS, center.norm(dim=1).tolist(),
                                                         strict=True)))
        return center

    def _gains(self, rng: np.random.Generator, m: int) -> np.ndarray:
        return rng.uniform(-self.cfg.gain_db, 0.0, size=(m, N_PARTS))

    # --- stage 3: main training (eq. 8)
    def main_stage(self) -> None:
        cfg = self.cfg
        if (self.out / "main.done").exists():
            return
        base = CSN(self.spec.net)
        if cfg.use_pretrain:
            base.load_state_dict(load_weights(self.out / "pretrained.safetensors").model.state_dict())
        net, norm = self.wrap(base), NormLoss().to(self.env.device)
        mods = {"net": net, "norm": norm} if cfg.use_norm else {"net": net}
        steps = max(1, cfg.triplets_per_epoch // cfg.batch)
        stage = Stage(self, "main", mods, cfg.lr, cfg.epochs, steps, self.budget(2), cfg.warmup_steps)
        sampler = TripletSampler(self.train.index, pseudo=cfg.use_pseudo, additional=cfg.use_additional,
                                 same_tempo=cfg.same_tempo, keep_prob=cfg.keep_prob)
        val_sampler = TripletSampler(self.val.index, pseudo=cfg.use_pseudo, additional=cfg.use_additional,
                                     same_tempo=False, keep_prob=cfg.keep_prob)
        val_trip = val_sampler.draw(cfg.val_triplets, np.random.default_rng([cfg.seed, 97]))
        val_clips, val_present = self.val.render(flatten(val_trip), level_db=self.level)

        def step(rng: np.random.Generator) -> dict[str, float]:
            t0 = time.perf_counter()
            trip = sampler.draw(cfg.batch, rng)
            clips, present = self.train.render(flatten(trip), self._gains(rng, 3 * len(trip)),
                                               self.level)
            t1 = time.perf_counter()
            emb = self.embed(net, clips)
            losses = self._main_losses(trip, emb, present, norm)
            self._update(stage.opt, losses["loss"])
            return {k: v.item() for k, v in losses.items()} | {
                "data_s": t1 - t0, "compute_s": time.perf_counter() - t1}

        def val() -> dict[str, float]:
            emb = self.embed_eval(_unwrap(net), val_clips)
            row = validate_triplets(val_trip, emb, val_present, norm if cfg.use_norm else None)
            return row | subspace_dims(emb, val_present, norms=True)

        stage.train(step, val, "val_score")
        if self.env.main:
            (self.out / "main.done").write_text("{}")
        self._barrier()

    def _main_losses(self, trip: Sequence[Triplet], emb: torch.Tensor, present: torch.Tensor,
                     norm: NormLoss) -> dict[str, torch.Tensor]:
        cfg, dev = self.cfg, emb.device
        a, p, n = emb[0::3], emb[1::3], emb[2::3]
        cond = torch.tensor([t.cond for t in trip], device=dev)
        basic = masked_triplet_loss(a, p, n, cond, cfg.margin)
        out = {"triplet": basic}
        loss = basic
        add_rows = [i for i, t in enumerate(trip) if t.additional is not None]
        if add_rows:
            idx = torch.tensor(add_rows, device=dev)
            c2 = torch.tensor([trip[i].additional for i in add_rows], device=dev)
            # the additional triplet: anchor (A,B), positive (D,B), negative (A,C) under c'
            extra = masked_triplet_loss(a[idx], n[idx], p[idx], c2, cfg.margin)
            out["triplet_add"] = extra
            loss = (basic * len(trip) + extra * len(add_rows)) / (len(trip) + len(add_rows))
        if cfg.use_norm:
            ln = norm(emb, present)
            out["norm"] = ln
            loss = loss + cfg.norm_lambda * ln
        if cfg.spread_lambda:
            ls = spread_loss(emb, present)
            out["spread"] = ls
            loss = loss + cfg.spread_lambda * ls
        out["loss"] = loss
        return out

    def _update(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def _barrier(self) -> None:
        if self.env.world > 1:
            dist.barrier()

    # --- all of it
    def fit(self) -> Path:
        t0 = time.time()
        if self.cfg.use_pretrain:
            self.individual()
            self.pretrain()
        self.main_stage()
        if self.env.main:
            finish(self, time.time() - t0)
        return self.out / "best.safetensors"


def effective_dim(x: torch.Tensor) -> float:
    """Participation ratio of the rows of ``x`` (N, D): 1 = collapsed to one direction."""
    from trainer.evaluate.metrics import participation_ratio

    return participation_ratio(x.detach().float().cpu().numpy())


def subspace_dims(emb: torch.Tensor, present: torch.Tensor, norms: bool = False
                  ) -> dict[str, float]:
    """Per part, the effective dimension of its subspace over the rows where the part is
    present (``val_dim_<part>``), and with ``norms`` the mean norm of the subspace there
    (``val_norm_<part>``, the scale the triplet margin is measured against).

    emb: (N, 640); present: (N, 5) in {0, 1}. A collapse shows as val_dim falling towards 1.
    """
    out: dict[str, float] = {}
    sub = emb.detach().float().reshape(len(emb), N_PARTS, -1)
    on = present.bool()
    for c, part in enumerate(PARTS):
        x = sub[on[:, c], c]
        out[f"val_dim_{part}"] = effective_dim(x) if len(x) > 1 else float("nan")
        if norms:
            out[f"val_norm_{part}"] = x.norm(dim=1).mean().item() if len(x) else float("nan")
    return out


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


def validate_triplets(trip: Sequence[Triplet], emb: torch.Tensor, present: torch.Tensor,
                      norm: NormLoss | None) -> dict[str, float]:
    """Per-part share of validation triplets whose positive is nearer than the negative."""
    from model.losses import masked_distance

    a, p, n = emb[0::3], emb[1::3], emb[2::3]
    cond = torch.tensor([t.cond for t in trip], device=emb.device)
    ok = (masked_distance(a, p, cond) < masked_distance(a, n, cond)).float()
    row: dict[str, float] = {}
    accs = []
    for c, part in enumerate(PARTS):
        sel = cond == c
        if sel.any():
            row[f"val_acc_{part}"] = ok[sel].mean().item()
            accs.append(row[f"val_acc_{part}"])
    row["val_acc"] = float(np.mean(accs))
    row["val_score"] = row["val_acc"]
    if norm is not None:
        pred = norm.logits(emb) > 0
        row["val_presence_acc"] = (pred == present.bool()).float().mean().item()
        # a model must rank the parts and tell which are present (Table 3 rests on the norms)
        row["val_score"] = (row["val_acc"] + row["val_presence_acc"]) / 2
    return row


def validation_metrics(run: Run, seed: int = 0, draws: int = 5) -> dict:
    """Table 2 and Table 3 in small on the validation split, for the best model of the run.

    Music-ID alone says little (an MFCC baseline scores high on it while knowing nothing of
    parts), so a run is judged by pseudo-piece separation (chance 10 %, mean and std over
    ``draws`` seeded draws) and clean-stem identification (chance 20 %).
    """
    from trainer.data.dataset import SlakhDataset
    from trainer.evaluate.baselines import model_embed_fn
    from trainer.evaluate.metrics import spread
    from trainer.evaluate.validation import pseudo_piece_draws, stem_identification

    w = load_weights(run.out / "best.safetensors", run.env.device)
    fn = model_embed_fn(w.model, w.spec.audio, run.env.device)
    sec = run.cfg.segment_seconds

    def finite(scores: dict[str, float]) -> dict[str, float | None]:
        return {k: (None if math.isnan(v) else round(v, 2)) for k, v in scores.items()}

    def one(root: Path) -> dict:
        ds = SlakhDataset(root, "validation", sample_rate=run.cfg.sample_rate)
        per_draw = pseudo_piece_draws(ds, fn, seconds=sec, seed=seed, draws=draws)
        sp = {p: spread(v) for p, v in per_draw.items()}
        return {
            "split": "validation", "tracks": len(ds), "segment_seconds": sec,
            "table2_pseudo_piece_knn": finite({p: s["mean"] for p, s in sp.items()}),
            "table2_std": finite({p: s["std"] for p, s in sp.items()}), "table2_draws": draws,
            "table3_stem_identification": finite(stem_identification(
                ds, fn, seconds=sec, seed=seed, max_segments=20)),
        }

    first = one(run.data[0])
    if len(run.data) > 1:  # the first dataset's figures stay at the top level
        first["datasets"] = {run.data[0].name: dict(first)} | {d.name: one(d) for d in run.data[1:]}
    return first


def training_seconds(log_path: Path) -> float:
    """Time spent in training epochs over every process of a run (resumes included)."""
    rows = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
    return round(sum(r.get("epoch_s", 0.0) for r in rows), 1)


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


def plot_log(log_path: Path, png: Path) -> None:
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


def reopen(out: Path, stage: str) -> None:
    """Let a finished stage of a run train on (give it more epochs or a larger time budget
    with the overrides); the stages after it are discarded and will run again."""
    order = ["pretrain", "main"]
    if stage not in order:
        raise ValueError(f"can only reopen one of {order}, not {stage!r}")
    later = order[order.index(stage) + 1:]
    for name in later:
        for f in (f"{name}.done", f"ckpt-{name}.pt"):
            (out / f).unlink(missing_ok=True)
    if "main" in later:
        for f in ("best.safetensors", "best.json", "metrics.json"):
            (out / f).unlink(missing_ok=True)
    (out / f"{stage}.done").unlink(missing_ok=True)
    ckpt = out / f"ckpt-{stage}.pt"
    if ckpt.exists():
        blob = torch.load(ckpt, map_location="cpu", weights_only=True)
        # the config may change on reopening, so the best score starts afresh
        blob["state"].update(done=False, bad_epochs=0, best=-math.inf)
        atomic_torch_save(blob, ckpt)
    log_path = out / "log.jsonl"
    if log_path.exists():
        keep = [x for x in log_path.read_text().splitlines()
                if x.strip() and json.loads(x)["stage"] not in later]
        log_path.write_text("".join(k + "\n" for k in keep))
    log.info("reopened stage %s; discarded %s", stage, ", ".join(later) or "nothing")


# ----------------------------------------------------------------------------- CLI
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
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args, overrides = ap.parse_known_args(argv)
    setup_logging()
    try:
        if args.out.exists() and any(args.out.iterdir()) and not args.resume:
            raise ValueError(f"{args.out}: run folder is not empty; pass --resume to continue it")
        if args.resume and (args.out / "config.json").exists():
            saved = TrainConfig.from_dict(json.loads((args.out / "config.json").read_text()))
            cfg = apply_overrides(saved, overrides)
        else:
            cfg = resolve(args.preset, overrides)
        for d in args.data:
            if not d.is_dir():
                raise ValueError(f"{d}: dataset folder not found")
        if args.reopen:
            if not args.resume:
                raise ValueError("--reopen needs --resume (it continues an existing run)")
            reopen(args.out, args.reopen)
        run = Run(cfg, args.data, args.out, progress=not args.quiet)
        best = run.fit()
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
