"""The training loop shared by every stage: devices, the lr schedule, one :class:`Stage`'s epoch
loop with validation, early stopping, atomic checkpoints and resume, and reopening a finished
stage.

CUDA when present (DDP when ``torchrun`` sets RANK), CPU otherwise. Only rank 0 logs, validates
and saves. A stage's checkpoint is ``ckpt-<stage>.pt`` in the run folder (``:`` written as
``-``): its modules' state dicts, the optimizer, the :class:`StageState` and the config, and
with an exponential moving average of the weights (``ema_decay``) the averaged modules too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from model.parts import PARTS
from trainer.config import TrainConfig

log = logging.getLogger(__name__)
STAGES = ("individual", "pretrain", "main")


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
        n = torch.cuda.device_count() if want_cuda else 0
        if want_cuda and local >= n:
            raise RuntimeError(f"process {local} of this node has no GPU of its own (CUDA sees {n}): "
                               f"start at most {n} per node (torchrun --nproc_per_node={n}), "
                               "or train on CPU processes with --device=cpu")
        dist.init_process_group("nccl" if want_cuda else "gloo")
        device = torch.device(f"cuda:{local}") if want_cuda else torch.device("cpu")
        if want_cuda:
            torch.cuda.set_device(device)
        return Env(device, rank, world, local)
    return Env(torch.device("cuda" if want_cuda else "cpu"))


def progress_at(step: int, total: int, warmup: int, time_frac: float = 0.0) -> float:
    """How far a stage's schedule stands, 0-1: the share of its steps after ``warmup`` or of its
    time budget (``time_frac``) spent, whichever is further."""
    return min(1.0, max((step - warmup) / max(1, total - warmup), time_frac))


def lr_at(step: int, total: int, base: float, warmup: int, time_frac: float = 0.0) -> float:
    """Cosine decay to 10 % of ``base`` over the steps or over the time budget (``time_frac``:
    share of it spent), whichever runs out first (:func:`progress_at`); the first ``warmup``
    steps ramp linearly up to that value (so a stage restarted late in its budget, e.g. a
    widened network, warms up to where its schedule stands, not to ``base``)."""
    progress = progress_at(step, total, warmup, time_frac)
    lr = base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    if warmup and step < warmup:
        lr *= (step + 1) / warmup
    return lr


def atomic_torch_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def unwrap(m: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


def averaged_state(saved: dict) -> dict:
    """A module's own state from its moving average as a checkpoint keeps it (``ckpt["ema"][k]``,
    an ``AveragedModel``'s state: the module's keys under ``module.`` beside the count)."""
    return {k.removeprefix("module."): v for k, v in saved.items() if k != "n_averaged"}


class Paused(Exception):
    """This process's epoch cap was reached; the run resumes from its checkpoint."""


class RunHost(Protocol):
    """What a :class:`Stage` needs of the run it belongs to (:class:`trainer.stages.Run`)."""

    cfg: TrainConfig
    env: Env
    out: Path
    progress: bool
    epochs_this_run: int

    def log(self, row: dict) -> None: ...

    def should_pause(self) -> bool: ...

    def on_best(self, stage: str, modules: dict[str, nn.Module], row: dict) -> None: ...


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
    """An epoch loop with validation, early stopping, checkpoints and resume.

    With ``ema_decay`` in (0, 1) the stage also keeps an exponential moving average of its
    modules' weights and buffers, updated after every step (decay per step). Validation and the
    best weights (``RunHost.on_best``) read the average, the checkpoint keeps it beside the raw
    weights (``ema``), and the optimizer goes on stepping the raw weights.
    """

    def __init__(self, run: RunHost, name: str, modules: dict[str, nn.Module], lr: float,
                 epochs: int, steps: int, budget_s: float, warmup: int = 0, ema_decay: float = 0.0,
                 lr_scale: dict[str, float] | None = None):
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), not {ema_decay}")
        self.run, self.name = run, name
        self.modules = modules
        # the modules at ``lr`` in one parameter group (so checkpoints of earlier runs load),
        # then one group per module that ``lr_scale`` gives its own multiple of it
        scale = {k: v for k, v in (lr_scale or {}).items() if k in modules and v != 1.0}
        groups = [{"params": [p for k, m in modules.items() if k not in scale for p in m.parameters()]}]
        groups += [{"params": list(modules[k].parameters()), "lr_scale": v} for k, v in scale.items()]
        self.opt = torch.optim.Adam(groups, lr=lr, weight_decay=run.cfg.weight_decay)
        self.ema = {k: AveragedModel(unwrap(m), multi_avg_fn=get_ema_multi_avg_fn(ema_decay),
                                     use_buffers=True)
                    for k, m in modules.items()} if ema_decay else {}
        self.lr, self.epochs, self.steps, self.budget_s, self.warmup = lr, epochs, steps, budget_s, warmup
        self.ckpt = run.out / f"ckpt-{name.replace(':', '-')}.pt"
        self.state = StageState()
        # where the schedule stands at the step being taken (progress_at), for terms that fade
        # with it as the rate does
        self.progress = 0.0
        if self.ckpt.exists():
            self._load()

    def _load(self) -> None:
        blob = torch.load(self.ckpt, map_location=self.run.env.device, weights_only=True)
        missing = [k for k in self.modules if k not in blob["modules"]]
        if missing:  # e.g. --resume with a term whose module the run did not train before
            raise ValueError(f"{self.ckpt}: no saved {', '.join(missing)} to resume (the run "
                             "trained without it); start a new run from its weights with --init")
        for k, m in self.modules.items():
            try:
                unwrap(m).load_state_dict(blob["modules"][k])
            except RuntimeError as e:  # same module, another form (e.g. a changed term option)
                first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
                raise ValueError(f"{self.ckpt}: the saved {k} has another form than this run's "
                                 f"({first}); resume with the options it was trained with, or "
                                 "start a new run from its weights with --init") from None
        if "opt" in blob:
            self.opt.load_state_dict(blob["opt"])
        else:  # a widened network (trainer.widen): new shapes, so the moments start afresh
            log.info("%s: optimizer starts afresh", self.name)
        # an average saved by an earlier process goes on; without one it starts from these weights
        for k, avg in self.ema.items():
            if k in blob.get("ema", {}):
                avg.load_state_dict(blob["ema"][k])
        self.state = StageState(**blob["state"])
        log.info("%s: resumed at epoch %d, step %d", self.name, self.state.epoch, self.state.step)

    def save(self) -> None:
        if not self.run.env.main:
            return
        blob = {"modules": {k: unwrap(m).state_dict() for k, m in self.modules.items()},
                "opt": self.opt.state_dict(), "state": self.state.__dict__,
                "config": self.run.cfg.to_dict()}
        if self.ema:
            blob["ema"] = {k: avg.state_dict() for k, avg in self.ema.items()}
        atomic_torch_save(blob, self.ckpt)

    def train(self, step_fn: Callable[[np.random.Generator], dict[str, float]],
              val_fn: Callable[[], dict[str, float]], score_key: str) -> StageState:
        """Run epochs until done, early stop, time budget, or this process's epoch cap."""
        st = self.state
        while not st.done and st.epoch < self.epochs:
            t0 = time.perf_counter()
            sums, timing = self._epoch(step_fn, t0)
            st.epoch += 1
            st.seconds += time.perf_counter() - t0
            row = {"stage": self.name, "epoch": st.epoch, "step": st.step,
                   "lr": self.opt.param_groups[0]["lr"],
                   **sums, **timing,
                   "epoch_s": time.perf_counter() - t0}
            if self.run.env.main:
                self._validate(row, val_fn, score_key)
            st.history.append({k: row[k] for k in row if isinstance(row[k], (int, float))})
            self._end_epoch()
        return st

    def _epoch(self, step_fn: Callable[[np.random.Generator], dict[str, float]], t0: float
               ) -> tuple[dict[str, float], dict[str, float]]:
        """One epoch of ``self.steps`` training steps; the means of the step rows (each over
        the steps that reported it: a term may skip a step), and the data and compute seconds."""
        cfg, env, st = self.run.cfg, self.run.env, self.state
        total = self.epochs * self.steps
        stage_id = STAGES.index(self.name.split(":")[0])
        sub = PARTS.index(self.name.split(":")[1]) if ":" in self.name else 0
        rng = np.random.default_rng([cfg.seed, stage_id, sub, st.epoch, env.rank])
        for m in self.modules.values():
            m.train()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        timing = {"data_s": 0.0, "compute_s": 0.0}
        bar = tqdm(range(self.steps), desc=f"{self.name} {st.epoch + 1}/{self.epochs}",
                   disable=not env.main or not self.run.progress, leave=False)
        for _ in bar:
            spent = (st.seconds + time.perf_counter() - t0) / self.budget_s if self.budget_s else 0.0
            self.progress = progress_at(st.step, total, self.warmup, spent)
            lr = lr_at(st.step, total, self.lr, self.warmup, spent)
            for g in self.opt.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            out = step_fn(rng)
            for k, avg in self.ema.items():
                avg.update_parameters(unwrap(self.modules[k]))
            for k, v in out.items():
                if k in timing:
                    timing[k] += v
                else:
                    sums[k] = sums.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
            st.step += 1
            bar.set_postfix(loss=f"{out['loss']:.4f}")
        return {k: v / counts[k] for k, v in sums.items()}, timing

    def _validate(self, row: dict, val_fn: Callable[[], dict[str, float]], score_key: str) -> None:
        """Rank 0: add the validation figures to ``row``, keep the best, log the row."""
        st = self.state
        for m in self.modules.values():
            m.eval()
        with self.averaged():
            row.update(val_fn())
            score = row[score_key]
            if score > st.best:
                st.best, st.bad_epochs = score, 0
                self.run.on_best(self.name, self.modules, row)
            else:
                st.bad_epochs += 1
        self.run.log(row)

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """Inside, the modules hold the moving average of their weights (if the stage keeps one
        and it has seen a step); on leaving, their raw weights come back."""
        if not self.ema or any(int(avg.n_averaged) == 0 for avg in self.ema.values()):
            yield
            return
        raw = {k: {n: t.detach().clone() for n, t in unwrap(self.modules[k]).state_dict().items()}
               for k in self.ema}
        try:
            for k, avg in self.ema.items():
                unwrap(self.modules[k]).load_state_dict(avg.module.state_dict())
            yield
        finally:
            for k, state in raw.items():
                unwrap(self.modules[k]).load_state_dict(state)

    def _end_epoch(self) -> None:
        """Early stop, time budget and epoch count; checkpoint; pause at this process's cap."""
        cfg, st = self.run.cfg, self.state
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
