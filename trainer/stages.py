"""The run and its three stages (paper sec. 3-4.1): individual networks, pre-training (eq. 9),
then triplet + norm training on pseudo pieces (eq. 8).

:class:`Run` loads the data once and holds what the stages share (device, banks of stems,
model specs, the log); each stage is an epoch loop of :class:`trainer.loop.Stage` with its own
training step and validation. Training steps are forward passes with autograd; every
eval-mode embedding (validation, pre-training targets) goes through the app's
:class:`model.embedder.Embedder`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from model.audio import log_mel
from model.embedder import Embedder
from model.losses import (
    NormLoss,
    ScatterMemory,
    block_cosine,
    contrast_metrics,
    distill_loss,
    invariance_loss,
    masked_distance,
    masked_triplet_loss,
    nuisance_leak,
    part_contrast_loss,
    part_hit_rates,
    pretrain_block_loss,
    pretrain_loss,
    pretrain_target,
    solo_id_loss,
    spread_loss,
    stem_loss,
    triplet_hinge,
    triplet_loss,
)
from model.network import CSN, ModelSpec
from model.parts import N_PARTS, PARTS, stack_parts
from model.weights import Weights, load_weights, save_weights
from trainer.augment import SpecMasks, mask_spectrogram
from trainer.bank import EQ_POINTS_HZ, StemBank
from trainer.config import (
    TrainConfig,
    check_start,
    dataset_weights,
    part_weights,
    portable_config,
)
from trainer.content import ContentHead, chroma_slices, content_loss
from trainer.evaluate.metrics import largest_norm_predict, participation_ratio
from trainer.loop import Stage, setup_env, unwrap
from trainer.sampling import (
    Piece,
    Triplet,
    TripletSampler,
    dataset_piece,
    flatten,
    group_labels,
    individual_triplets,
    solo_pieces,
    source_labels,
    stem_pieces,
)
from trainer.summary import finish
from trainer.widen import pitch_lifted, rechannel_state, repool_state, reset_blocks

log = logging.getLogger(__name__)
EVAL_BATCH = 64  # clips per forward pass when embedding for validation and targets


class Run:
    """One training run in the folder ``out``: the data, the device, and the three stages."""

    def __init__(self, cfg: TrainConfig, data: Path | Sequence[Path], out: Path, progress: bool = True):
        self.data = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
        self.cfg, self.out, self.progress = cfg, out, progress
        self.env = setup_env(cfg)
        self.epochs_this_run = 0
        out.mkdir(parents=True, exist_ok=True)
        (out / "individual").mkdir(exist_ok=True)
        torch.manual_seed(cfg.seed + self.env.rank)
        self._load_data()
        self.level = cfg.level_db or None
        self.spec, self.ind_spec = cfg.model_spec(), cfg.individual_spec()
        self.audio = self.spec.audio
        if self.env.main:
            cfg.save(out / "config.json")
        self.amp = self.env.device.type == "cuda" and cfg.amp
        self.target_center: torch.Tensor | None = None  # set by pre-training with pre_center
        self.init_info: dict | None = None  # set by a main stage started from fit --init weights

    def _load_data(self) -> None:
        """The train and validation splits of every dataset, pooled into two stem banks on the
        device; ``self.summary`` describes them (for the weights card and summary.json)."""
        from trainer.data.dataset import SlakhDataset
        from trainer.data.render import heldout_fonts

        cfg = self.cfg
        train = [SlakhDataset(d, "train", sample_rate=cfg.sample_rate) for d in self.data]
        val = [SlakhDataset(d, "validation", sample_rate=cfg.sample_rate) for d in self.data]
        heldout = heldout_fonts()
        for d in train:
            used = [f for f in d.fonts if f in heldout]
            if used:
                raise ValueError(f"{d.root}: its training split was rendered with {', '.join(used)}, "
                                 "kept for evaluation (font set 'heldout'): measuring a model on "
                                 "timbres it never heard needs that font out of training; render "
                                 "training data with another font set")
        for name, split in (("train", train), ("validation", val)):
            if sum(len(d) for d in split) < 4:
                roots = ", ".join(str(d) for d in self.data)
                raise ValueError(f"{roots}: the {name} split has {sum(len(d) for d in split)} "
                                 "tracks; at least 4 are needed")
        kw = dict(segment_seconds=cfg.segment_seconds, hop_seconds=cfg.hop_seconds,
                  device=self.env.device, progress=self.progress and self.env.main)
        weights = dataset_weights(cfg.data_weights, [d.root.name for d in train])
        self.train = StemBank.from_datasets(train, max_tracks=cfg.max_tracks, weights=weights,
                                            twins=cfg.twin_prob > 0, **kw)
        if cfg.twin_prob > 0:
            cols = [PARTS.index(p) for p in cfg.twin_parts]
            have = self.train.index.twin[:, cols].any(axis=1)
            if not have.any():
                raise ValueError(f"twin_prob: no training track has twins of {', '.join(cfg.twin_parts)}; "
                                 "render them with 'partwise-train data twins ROOT --parts ...'")
            log.info("twins of %s: %d of %d training tracks", ", ".join(cfg.twin_parts),
                     int(have.sum()), len(have))
        self.val = StemBank.from_datasets(val, max_tracks=cfg.max_val_tracks, **kw)
        per_dataset = [{"root": d.root.name, "train_tracks": len(d), "validation_tracks": len(v),
                        "sources": sorted({t.source for t in d.tracks}),
                        "fonts": sorted({t.font for t in d.tracks if t.font})}
                       for d, v in zip(train, val, strict=True)]
        if weights is not None:
            for entry, w in zip(per_dataset, weights, strict=True):
                entry["draw_weight"] = w
        self.summary = {
            "root": "+".join(d.name for d in self.data), "datasets": per_dataset,
            "train_tracks": len(self.train), "validation_tracks": len(self.val),
            "train_hours": round(sum(a.shape[1] for a in self.train.audio) / cfg.sample_rate / 3600, 3),
            "sources": sorted(set().union(*(e["sources"] for e in per_dataset))),
            "fonts": sorted(set().union(*(e["fonts"] for e in per_dataset))),
        }

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
        if self.cfg.init_weights:  # the main stage is the only one: it has the whole budget
            return self.cfg.time_budget_min * 60 * (stage == 2) / parts
        return self.cfg.time_budget_min * 60 * self.cfg.stage_share[stage] / parts

    def embed(self, net: nn.Module, clips: torch.Tensor,
              masks: tuple[np.random.Generator, SpecMasks] | None = None) -> torch.Tensor:
        """Training-mode forward pass with autograd (bf16 autocast on CUDA): (B, samples) ->
        (B, D); with ``masks`` (the step's generator and the masks) each row's spectrogram is
        masked first (trainer.augment)."""
        mel = log_mel(clips, self.audio)
        if masks is not None:
            mel = mask_spectrogram(mel, *masks)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            return net(mel).float()

    def embed_eval(self, net: nn.Module, spec: ModelSpec, clips: torch.Tensor) -> torch.Tensor:
        """Eval-mode embeddings (B, samples) -> (B, D) on the run's device, computed by the
        app's own path (:meth:`model.embedder.Embedder.embed_clips`), so validation measures
        what a scan computes. ``net`` is left in eval mode (each epoch starts with train())."""
        emb = Embedder(unwrap(net), spec, device=self.env.device, batch_size=EVAL_BATCH)
        return torch.from_numpy(emb.embed_clips(clips)).to(self.env.device)

    def wrap(self, m: nn.Module) -> nn.Module:
        m = m.to(self.env.device)
        if self.env.device.type == "cpu" and isinstance(m, CSN):
            m = m.use_channels_last()  # a training step about 1.5x as fast on the CPU
        if self.env.world > 1:
            m = nn.SyncBatchNorm.convert_sync_batchnorm(m) if self.env.device.type == "cuda" else m
            ids = [self.env.local_rank] if self.env.device.type == "cuda" else None
            m = nn.parallel.DistributedDataParallel(m, device_ids=ids)
        return m

    def on_best(self, stage: str, modules: dict[str, nn.Module], row: dict) -> None:
        net = unwrap(modules["net"])
        if stage.startswith("individual:"):
            path = self.out / "individual" / f"{stage.split(':')[1]}.safetensors"
            save_weights(path, net, self.ind_spec, card={"stage": stage, "val": row})
        elif stage == "pretrain":
            save_weights(self.out / "pretrained.safetensors", net, self.spec, card={"val": row})
        else:
            bias = unwrap(modules["norm"]).bias.detach().cpu().tolist() if "norm" in modules else None
            # the training config too, so `fit --init` from a run's own best weights trains on with
            # what trained them (the start and teacher files by name only, as in an exported card)
            config = portable_config(self.cfg.to_dict())
            card = {"val": row, "norm_bias": bias, "data": self.summary, "config": config}
            if self.init_info:  # what the run started from, with that model's chunks of training
                card["init"] = self.init_info
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
                emb = self.embed_eval(net, self.ind_spec, bank.clean([s for t in trip for s in t], p))
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
            loss = self._pretrain_loss(self.embed(net, clips), target, present)
            self._update(stage.opt, loss)
            return {"loss": loss.item(), "data_s": t1 - t0, "compute_s": time.perf_counter() - t1}

        def val() -> dict[str, float]:
            emb = self.embed_eval(net, self.spec, val_clips)
            return {"val_mse": pretrain_loss(emb, val_target).item(),
                    "val_cos": block_cosine(emb, val_target, val_present),
                    "val_score": -self._pretrain_loss(emb, val_target, val_present).item(),
                    **subspace_dims(emb, val_present, norms=True), **target_dims}

        stage.train(step, val, "val_score")
        if self.env.main:
            (self.out / "pretrain.done").write_text("{}")
        self._barrier()

    def _pretrain_loss(self, emb: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if self.cfg.pre_loss == "blocks":
            return pretrain_block_loss(emb, target, present.to(emb.device))
        if self.cfg.pre_loss != "mse":
            raise ValueError(f"pre_loss must be 'mse' or 'blocks', not {self.cfg.pre_loss!r}")
        return pretrain_loss(emb, target)

    def _pretrain_pieces(self, bank: StemBank, n: int, rng: np.random.Generator):
        """Dataset pieces (the paper), or pseudo pieces with made silences (``pre_pseudo``)."""
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
        outs = torch.stack([self.embed_eval(ind[j], self.ind_spec, stems[:, j]) for j in range(N_PARTS)], dim=1)
        return pretrain_target(outs, present, self.target_center, self.cfg.pre_block_norm)

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
            out = self.embed_eval(ind[j], self.ind_spec, stems[on, j]) if on.any() else None
            rows.append(out.mean(0) if out is not None else torch.zeros(
                self.ind_spec.net.out_dim, device=self.env.device))
        center = torch.stack(rows)
        log.info("pre-training targets centred: |mean output| per part %s",
                 " ".join(f"{p}={v:.3g}" for p, v in zip(PARTS, center.norm(dim=1).tolist(),
                                                         strict=True)))
        return center

    def _gains(self, rng: np.random.Generator, m: int) -> np.ndarray:
        return rng.uniform(-self.cfg.gain_db, 0.0, size=(m, N_PARTS))

    def _eq(self, rng: np.random.Generator, m: int) -> np.ndarray | None:
        """Each part of each training piece: its EQ curve's gains in dB (``--eq_db``); off, it
        draws nothing, so a run without it draws as runs did before it."""
        if not self.cfg.eq_db:
            return None
        return rng.uniform(-self.cfg.eq_db, self.cfg.eq_db, size=(m, N_PARTS, len(EQ_POINTS_HZ)))

    # --- stage 3: main training (eq. 8)
    def main_stage(self) -> None:
        cfg = self.cfg
        if (self.out / "main.done").exists():
            return
        base, norm = CSN(self.spec.net), NormLoss()
        taught_by = check_start(cfg)
        if cfg.init_weights:
            # a checkpoint of this stage overrides the start weights (and may have another
            # shape: trainer.widen), so they are then only read for the card's record
            self._init_from(Path(cfg.init_weights), base, norm,
                            load=not (self.out / "ckpt-main.pt").exists())
        elif cfg.use_pretrain:
            base.load_state_dict(load_weights(self.out / "pretrained.safetensors").model.state_dict())
        net, norm = self.wrap(base), norm.to(self.env.device)
        mods = {"net": net, "norm": norm} if cfg.use_norm else {"net": net}
        head = ContentHead(cfg.content_parts, cfg.content_slices,
                           temperature=cfg.content_temperature).to(self.env.device) \
            if cfg.content_lambda else None
        if head is not None:  # trained and checkpointed with the network, never exported
            mods["content"] = self.wrap(head)
        steps = max(1, cfg.triplets_per_epoch // cfg.batch)
        stage = Stage(self, "main", mods, cfg.lr, cfg.epochs, steps, self.budget(2), cfg.warmup_steps,
                      ema_decay=cfg.ema_decay, lr_scale={"content": cfg.content_lr_scale})
        sampler = TripletSampler(self.train.index, pseudo=cfg.use_pseudo, additional=cfg.use_additional,
                                 same_tempo=cfg.same_tempo, keep_prob=cfg.keep_prob,
                                 aligned=cfg.aligned_prob, part_weights=part_weights(cfg.part_weights),
                                 twin=cfg.twin_prob, twin_parts=[PARTS.index(p) for p in cfg.twin_parts])
        # validation stays unaligned, so its scores compare across runs whatever aligned_prob is
        val_sampler = TripletSampler(self.val.index, pseudo=cfg.use_pseudo, additional=cfg.use_additional,
                                     same_tempo=False, keep_prob=cfg.keep_prob)
        memory = ScatterMemory(cfg.spread_between_memory) if cfg.spread_between_memory else None
        masks = cfg.spec_masks()
        val_trip = val_sampler.draw(cfg.val_triplets, np.random.default_rng([cfg.seed, 97]))
        val_clips, val_present = self.val.render(flatten(val_trip), level_db=self.level)
        # clean stems at the dataset's own level, as Table 3 feeds them (own generator, so the
        # validation triplets are the same with or without them)
        val_solo = solo_pieces(self.val.index, cfg.val_solos, np.random.default_rng([cfg.seed, 98]))
        solo_clips, solo_present = self.val.render(val_solo) if val_solo else (None, None)
        val_content = self._content_targets(head, flatten(val_trip), val_present, self.val) \
            if head is not None else None
        teacher = self._teacher(taught_by) if taught_by is not None else None
        val_taught = torch.from_numpy(teacher.embed_clips(val_clips)).to(self.env.device) \
            if teacher is not None else None

        def step(rng: np.random.Generator) -> dict[str, float]:
            t0 = time.perf_counter()
            trip = sampler.draw(cfg.batch, rng)
            pieces = flatten(trip)
            groups = sampler.label_groups(cfg.label_groups, cfg.group_size, rng,
                                          cfg.group_other_time) if cfg.label_groups else []
            pieces += [piece for g in groups for piece in g]
            if cfg.solo_rows:
                pieces += solo_pieces(self.train.index, cfg.solo_rows, rng)
            gains, eq = self._gains(rng, len(pieces)), self._eq(rng, len(pieces))
            stem_rows, stems = stem_pieces(trip, [PARTS.index(name) for name in cfg.stem_parts]) \
                if cfg.stem_lambda else ([], [])
            if stems:  # last in the batch, each at its anchor's gains (and EQ)
                src = [3 * i for i in stem_rows]
                pieces += stems
                gains = np.concatenate([gains, gains[src]])
                eq = None if eq is None else np.concatenate([eq, eq[src]])
            clips, present = self.train.render(pieces, gains, self.level, eq)
            t1 = time.perf_counter()
            emb = self.embed(net, clips, (rng, masks) if masks.on else None)
            losses = self._main_losses(trip, emb, present, norm, memory, groups, stem_rows)
            if head is not None:  # on the triplets' and the groups' mixes
                seen = 3 * len(trip) + sum(len(g) for g in groups)
                terms = self._content_terms(
                    mods["content"](emb[:seen]),
                    self._content_targets(head, pieces[:seen], present[:seen], self.train))
                losses |= terms
                losses["loss"] = losses["loss"] + cfg.content_lambda * terms["content"]
            weight = distill_weight(cfg, stage.progress) if teacher is not None else 0.0
            if weight:  # on every row of the step, stems and solos included
                taught = torch.from_numpy(teacher.embed_clips(clips)).to(emb.device)
                losses["distill"] = distill_loss(emb, taught)
                losses["loss"] = losses["loss"] + weight * losses["distill"]
                losses["distill_w"] = torch.tensor(weight)
            self._update(stage.opt, losses["loss"])
            return {k: v.item() for k, v in losses.items()} | {
                "data_s": t1 - t0, "compute_s": time.perf_counter() - t1}

        def val() -> dict[str, float]:
            emb = self.embed_eval(net, self.spec, val_clips)
            row = validate_triplets(val_trip, emb, val_present, norm if cfg.use_norm else None)
            if val_content is not None:
                with torch.no_grad():
                    row |= {f"val_{k}": v.item() for k, v in
                            self._content_terms(mods["content"](emb), val_content).items()}
            if val_taught is not None:  # how far from the teacher, on the validation mixes
                row["val_distill"] = distill_loss(emb, val_taught).item()
            if solo_clips is not None:
                row |= solo_identification(self.embed_eval(net, self.spec, solo_clips), solo_present)
            return row | subspace_dims(emb, val_present, norms=True) | retrieval_top1(val_trip, emb, val_present)

        stage.train(step, val, "val_score")
        if self.env.main:
            (self.out / "main.done").write_text("{}")
        self._barrier()

    def _teacher(self, w: Weights) -> Embedder:
        """The frozen teacher ``w`` (of ``distill_weights``), embedding through its own front
        end (a teacher without this run's pitch rows, or with another STFT window, hears the
        same clips its own way)."""
        log.info("distilling from %s (%s) at weight %g%s", Path(self.cfg.distill_weights).name,
                 w.sha256[:12], self.cfg.distill_lambda,
                 f", falling to 0 over the first {self.cfg.distill_fade:.0%} of the run"
                 if self.cfg.distill_fade else "")
        return Embedder(w.model, w.spec, device=self.env.device, batch_size=EVAL_BATCH)

    @staticmethod
    def _content_targets(head: ContentHead, pieces: Sequence[Piece], present: torch.Tensor,
                         bank: StemBank) -> dict[str, tuple[torch.Tensor, ...]]:
        """Per content part: (rows, pitch-class targets, span weights) of the pieces that mix
        that part in; a span counts where the stem is audible there and the part in the mix."""
        out = {}
        for part in head.parts:
            j = PARTS.index(part)
            rows = [i for i, piece in enumerate(pieces) if piece[j] is not None]
            if not rows:
                continue
            idx = torch.tensor(rows, device=present.device)
            target, weight = chroma_slices(bank.clean([pieces[i][j] for i in rows], j), bank.sr,
                                           head.slices, bank.threshold_db)
            out[part] = (idx, target, weight * (present[idx, j] > 0).float()[:, None])
        return out

    @staticmethod
    def _content_terms(logits: dict[str, torch.Tensor], targets: dict[str, tuple[torch.Tensor, ...]]
                       ) -> dict[str, torch.Tensor]:
        """``content_<part>`` per part with targets, and ``content``, their mean (the term)."""
        out = {f"content_{p}": content_loss(logits[p][idx], target, weight)
               for p, (idx, target, weight) in targets.items()}
        terms = list(out.values())
        out["content"] = torch.stack(terms).mean() if terms else next(iter(logits.values())).sum() * 0.0
        return out

    def _init_from(self, path: Path, net: CSN, norm: NormLoss, load: bool = True) -> None:
        """Load ``fit --init`` weights into the main stage's network, and the presence biases
        their norm loss learned (``norm_bias_trained`` of a calibrated card, else
        ``norm_bias``) into ``norm``. A checkpoint of the stage, once there, overrides both;
        with ``load`` off only their record (name, checksum, training time) is taken."""
        w = load_weights(path)
        trained = w.card.get("training") or {}
        self.init_info = {"weights": path.name, "sha256": w.sha256,
                          "seconds": trained.get("seconds"), "chunks": trained.get("chunks", [])}
        if not load:
            return
        # the STFT window may change (--n_fft): the network's input keeps its shape, so the
        # weights are a start that training adapts to the sharper (or blurrier) spectrum;
        # the time pooling may gain standard deviations (--pool=meanstd) and the input a pitch
        # channel (--pitch): exact starts
        window, pool, channels = self.spec.audio.n_fft, self.spec.net.pool, self.spec.net.channels
        lifted = pitch_lifted(w.spec, self.spec)
        if replace(lifted, audio=replace(lifted.audio, n_fft=window),
                   net=replace(lifted.net, pool=pool)) != self.spec:
            raise ValueError(f"{path}: its model spec {w.spec.to_dict()} is not this run's "
                             f"{self.spec.to_dict()} (pass the same widths, n_mels, sample_rate)")
        if w.spec.audio.n_fft != window:
            log.warning("%s was trained with an STFT window of %d samples; this run's is %d "
                        "(an approximate start)", path, w.spec.audio.n_fft, window)
        state = w.model.state_dict()
        if w.spec.net.pool != pool:
            state = repool_state(state, w.spec.net, pool)
            log.info("%s pools over time by %s; this run by %s (the standard deviations start "
                     "at zero weight)", path, w.spec.net.pool, pool)
        if w.spec.net.channels != channels:
            state = rechannel_state(state, w.spec.net, channels)
            log.info("%s reads %d input channel(s); this run %d (the new ones start at zero "
                     "weight)", path, w.spec.net.channels, channels)
        net.load_state_dict(state)
        if self.cfg.init_reset_blocks:
            reset_blocks(net, self.cfg.init_reset_blocks, self.cfg.seed)
            log.info("the first %d conv pair(s) start from fresh random weights",
                     self.cfg.init_reset_blocks)
        bias = w.card.get("norm_bias_trained") or w.card.get("norm_bias")
        if bias is not None and len(bias) == N_PARTS:
            with torch.no_grad():
                norm.bias.copy_(torch.tensor(bias, dtype=norm.bias.dtype))
        log.info("main stage starts from %s (%s)", path, w.sha256[:12])

    def _main_losses(self, trip: Sequence[Triplet], emb: torch.Tensor, present: torch.Tensor,
                     norm: NormLoss, memory: ScatterMemory | None = None,
                     groups: Sequence[Sequence[Piece]] = (), stem_rows: Sequence[int] = ()
                     ) -> dict[str, torch.Tensor]:
        """Losses of one step. ``emb`` holds the triplets' rows (anchor, positive, negative in
        turn), then the rows of the label groups' pieces ``groups`` (which the contrastive term
        and the norm loss read), then any solo rows, which only the norm loss and the
        solo-identification term read, then one clean stem per triplet in ``stem_rows`` (the
        anchor's condition part alone: :func:`trainer.sampling.stem_pieces`), which only the
        stem term reads, as constant targets. ``memory`` pools the between-part spread term's
        scatters over steps."""
        cfg, dev = self.cfg, emb.device
        k = len(stem_rows)
        if k:
            stem_emb, stem_present = emb[-k:].detach(), present[-k:]
            emb, present = emb[:-k], present[:-k]
        rows = 3 * len(trip)
        emb_all, present_all = emb, present
        emb, present = emb[:rows], present[:rows]
        a, p, n = emb[0::3], emb[1::3], emb[2::3]
        cond = torch.tensor([t.cond for t in trip], device=dev)
        d_ap, d_an = masked_distance(a, p, cond), masked_distance(a, n, cond)
        basic = triplet_hinge(d_ap, d_an, cfg.margin)
        out = {"triplet": basic}
        # the step's basic triplets each part ranks right (its negative shares the rest of the
        # mix with the anchor): beside val_acc_<part>, says whether a part that fails on
        # validation fails on the songs it trains on too
        out |= {f"train_acc_{PARTS[c]}": acc
                for c, acc in part_hit_rates(d_ap.detach(), d_an.detach(), cond).items()}
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
            ln = norm(emb_all, present_all)
            out["norm"] = ln
            loss = loss + cfg.norm_lambda * ln
        if cfg.spread_lambda:
            ls = spread_loss(emb, present, floor=cfg.spread_floor,
                             parts=[PARTS.index(name) for name in cfg.spread_parts])
            out["spread"] = ls
            loss = loss + cfg.spread_lambda * ls
        same_time = source_labels(trip, dev, same_time=True) \
            if cfg.spread_between_lambda or (cfg.contrast_lambda and cfg.contrast_same_time) else None
        if cfg.spread_between_lambda:
            prs: dict[int, torch.Tensor] = {}
            lb = spread_loss(emb, present, floor=cfg.spread_between_floor, labels=same_time,
                             parts=[PARTS.index(name) for name in cfg.spread_between_parts],
                             memory=memory, prs=prs)
            out["spread_between"] = lb
            # what the term reads: each part's between-part dimension (pooled with a memory)
            out |= {f"between_pr_{PARTS[c]}": pr for c, pr in prs.items()}
            loss = loss + cfg.spread_between_lambda * lb
        if cfg.invariance_lambda:
            # condition c: anchor and negative share the rest of the mix, positive and negative
            # nothing; the additional triplet's c': anchor and positive share part c, positive
            # and negative nothing
            d_rest, d_none, conds = [d_an], [masked_distance(p, n, cond)], [cond]
            if add_rows:
                d_rest.append(masked_distance(a[idx], p[idx], c2))
                d_none.append(masked_distance(p[idx], n[idx], c2))
                conds.append(c2)
            lv = invariance_loss(torch.cat(d_rest), torch.cat(d_none), torch.cat(conds),
                                 parts=[PARTS.index(name) for name in cfg.invariance_parts])
            out["invariance"] = lv
            loss = loss + cfg.invariance_lambda * lv
        if cfg.stem_lambda and k:
            sel = torch.tensor(list(stem_rows), device=dev)
            cs = cond[sel]
            ratios: dict[int, torch.Tensor] = {}
            # the stems are those of stem_parts' triplets only (stem_pieces): no parts filter here
            lst = stem_loss(masked_distance(a[sel], stem_emb, cs), masked_distance(p[sel], n[sel], cs), cs,
                            keep=stem_present.gather(1, cs[:, None]).squeeze(1) > 0, ratios=ratios)
            out["stem"] = lst
            # each part's own reading: 0 when its mixes sit on their stems
            out |= {f"stem_{PARTS[c]}": r for c, r in ratios.items()}
            loss = loss + cfg.stem_lambda * lst
        if cfg.solo_id_lambda:
            li = solo_id_loss(emb_all, present_all)
            out["solo_id"] = li
            loss = loss + cfg.solo_id_lambda * li
        if cfg.contrast_lambda:
            labels = same_time if cfg.contrast_same_time else source_labels(trip, dev)
            if groups:
                labels = torch.cat([labels, group_labels(groups, dev, cfg.contrast_same_time)])
            # the triplets' rows and the groups', not the solo rows
            seen = rows + sum(len(g) for g in groups)
            lc = part_contrast_loss(emb_all[:seen], labels, present_all[:seen], cfg.contrast_tau,
                                    parts=[PARTS.index(name) for name in cfg.contrast_parts],
                                    metric=contrast_metrics(cfg.contrast_metric),
                                    hold_scale=cfg.contrast_hold_scale)
            out["contrast"] = lc
            loss = loss + cfg.contrast_lambda * lc
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
        if self.cfg.use_pretrain and not self.cfg.init_weights:
            self.individual()
            self.pretrain()
        self.main_stage()
        if self.env.main:
            finish(self, time.time() - t0)
        return self.out / "best.safetensors"


def distill_weight(cfg: TrainConfig, progress: float) -> float:
    """The teacher's weight at ``progress`` (0-1) through the stage's schedule: distill_lambda,
    or with distill_fade falling linearly to 0 at that share of the schedule and 0 after it."""
    if not cfg.distill_fade:
        return cfg.distill_lambda
    return cfg.distill_lambda * max(0.0, 1.0 - progress / cfg.distill_fade)


def effective_dim(x: torch.Tensor) -> float:
    """Participation ratio of the rows of ``x`` (N, D): 1 = collapsed to one direction."""
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


def retrieval_top1(trip: Sequence[Triplet], emb: torch.Tensor, present: torch.Tensor) -> dict[str, float]:
    """Per part, the share of validation anchors of that condition whose nearest neighbour in
    the part's subspace, among *all* other validation rows where the part sounds, plays the
    same track's part (``val_top1_<part>``: music-ID within the part, the rest of the mix
    different). A triplet shows one negative, so a subspace of one or two directions still
    ranks most of them right (run r15: drums triplet accuracy 0.84-0.89 at effective dimension
    2, music-ID halved); among hundreds of rows it does not.
    emb: (3 * len(trip), 640) in :func:`trainer.sampling.flatten` order; present: (N, 5)."""
    sub = stack_parts(emb.detach().float())
    labels = source_labels(trip, emb.device)
    on = present.bool() & (labels >= 0)
    cond = torch.tensor([t.cond for t in trip], device=emb.device)
    out: dict[str, float] = {}
    for c, part in enumerate(PARTS):
        anchors = torch.nonzero(cond == c).flatten() * 3
        if not len(anchors):
            continue
        d = torch.cdist(sub[anchors, c], sub[:, c])
        d[:, ~on[:, c]] = float("inf")
        d[torch.arange(len(anchors)), anchors] = float("inf")  # not itself
        hit = labels[d.argmin(dim=1), c] == labels[anchors, c]
        out[f"val_top1_{part}"] = hit.float().mean().item()
    return out


def solo_identification(emb: torch.Tensor, present: torch.Tensor) -> dict[str, float]:
    """Table 3 on clean validation stems, per epoch: the share of single-part clips whose
    longest subspace is that part (``val_solo_id_<part>``, and their mean ``val_solo_id``).

    emb: (N, 640) of clips with one part each; present: (N, 5). Clips the renderer left with no
    audible part are skipped."""
    present = present.cpu().numpy()
    one = present.sum(axis=1) == 1
    truth = present.argmax(axis=1)
    pred = largest_norm_predict(emb.detach().float().cpu().numpy())  # Table 3's own rule
    row, accs = {}, []
    for c, part in enumerate(PARTS):
        sel = one & (truth == c)
        if sel.any():
            row[f"val_solo_id_{part}"] = float(np.mean(pred[sel] == c))
            accs.append(row[f"val_solo_id_{part}"])
    if accs:
        row["val_solo_id"] = float(np.mean(accs))
    return row


def validate_triplets(trip: Sequence[Triplet], emb: torch.Tensor, present: torch.Tensor,
                      norm: NormLoss | None) -> dict[str, float]:
    """Per-part share of validation triplets whose positive is nearer than the negative
    (``val_acc_<part>``), and the share of the part's nearness the rest of the mix gives
    (``val_leak_<part>``, :func:`model.losses.nuisance_leak`)."""
    a, p, n = emb[0::3], emb[1::3], emb[2::3]
    cond = torch.tensor([t.cond for t in trip], device=emb.device)
    d_part, d_rest, d_none = (masked_distance(x, y, cond) for x, y in ((a, p), (a, n), (p, n)))
    hits = part_hit_rates(d_part, d_rest, cond)
    row: dict[str, float] = {f"val_acc_{PARTS[c]}": hits[c].item() for c in sorted(hits)}
    accs = list(row.values())
    # how much of each subspace's nearness the rest of the mix gives (0 = none; 1 = as much
    # as the part itself): the positive and negative share nothing
    for c, part in enumerate(PARTS):
        sel = cond == c
        if sel.sum() > 1:
            row[f"val_leak_{part}"] = nuisance_leak(d_part[sel], d_rest[sel], d_none[sel])
    row["val_acc"] = float(np.mean(accs))
    row["val_score"] = row["val_acc"]
    if norm is not None:
        pred = norm.logits(emb) > 0
        row["val_presence_acc"] = (pred == present.bool()).float().mean().item()
        # a model must rank the parts and tell which are present (Table 3 rests on the norms)
        row["val_score"] = (row["val_acc"] + row["val_presence_acc"]) / 2
    return row
