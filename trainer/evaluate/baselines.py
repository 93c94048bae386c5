"""Embedding functions to evaluate: a CSN (in training or from a file), the individual
networks, and the MFCC-statistics baseline. Each is an ``EmbedFn``: (B, samples) float32 clips at
the dataset rate -> (B, D) float32, batched on the chosen device (CUDA when present).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torchaudio

from model.audio import AudioConfig, log_mel
from model.embedder import Embedder, default_device
from model.network import CSN
from model.parts import PARTS, SUBSPACE_DIM
from model.weights import WeightsError, load_weights
from trainer.evaluate.segments import EmbedFn

log = logging.getLogger(__name__)


def model_embed_fn(model: CSN, audio: AudioConfig, device: str | torch.device | None = None,
                   batch_size: int = 32) -> EmbedFn:
    """Wrap a network (e.g. the one being trained) as an EmbedFn.

    Runs in eval mode without gradients and puts the model back in the mode it was in, so the
    trainer can call it between steps.
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device

    @torch.inference_mode()
    def embed(clips: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        try:
            x = torch.as_tensor(np.asarray(clips), dtype=torch.float32)
            out = [model(log_mel(x[i:i + batch_size].to(dev), audio)).float().cpu()
                   for i in range(0, len(x), batch_size)]
        finally:
            model.train(was_training)
        if not out:
            return np.zeros((0, model.cfg.out_dim), np.float32)
        return torch.cat(out).numpy().astype(np.float32, copy=False)

    return embed


class MFCCStats:
    """Classical timbre baseline: mean and standard deviation over time of ``n_mfcc`` MFCCs.

    (B, samples) -> (B, 2 * n_mfcc). Same analysis window and hop as the model's front end.
    """

    def __init__(self, audio: AudioConfig, n_mfcc: int = 20,
                 device: str | torch.device | None = None):
        self.device = torch.device(device) if device is not None else default_device()
        self.n_mfcc = n_mfcc
        self.transform = torchaudio.transforms.MFCC(
            sample_rate=audio.sample_rate, n_mfcc=n_mfcc, log_mels=True,
            melkwargs={"n_fft": audio.n_fft, "hop_length": audio.hop_length,
                       "n_mels": audio.n_mels, "f_min": audio.f_min,
                       "f_max": audio.sample_rate / 2, "center": True},
        ).to(self.device)

    @torch.inference_mode()
    def __call__(self, clips: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(clips), dtype=torch.float32, device=self.device)
        m = self.transform(x)  # (B, n_mfcc, frames)
        feats = torch.cat([m.mean(dim=-1), m.std(dim=-1, unbiased=False)], dim=-1)
        return feats.cpu().numpy().astype(np.float32, copy=False)


def individual_dir(path: str | os.PathLike) -> Path:
    """A training run folder (with ``individual/``) or the ``individual`` folder itself."""
    p = Path(path)
    return p / "individual" if (p / "individual").is_dir() else p


class IndividualNets:
    """The five per-part networks (``individual/{part}.safetensors``, 128-d each).

    ``part_fn(p)`` embeds with one network; ``concat`` runs all five on the same clips, sharing
    the front end, and returns (B, 640) with network j in subspace j.
    """

    def __init__(self, folder: str | os.PathLike, device: str | torch.device | None = None,
                 batch_size: int = 32):
        self.folder = individual_dir(folder)
        self.device = torch.device(device) if device is not None else default_device()
        self.batch_size = batch_size
        self.models: dict[str, CSN] = {}
        self.sha256: dict[str, str] = {}
        audio: AudioConfig | None = None
        for p in PARTS:
            path = self.folder / f"{p}.safetensors"
            w = load_weights(path, device=self.device)
            if audio is not None and w.spec.audio != audio:
                raise WeightsError(f"{path}: audio settings differ from the other networks")
            if w.spec.net.out_dim != SUBSPACE_DIM:
                raise WeightsError(f"{path}: an individual network must output {SUBSPACE_DIM} "
                                   f"values, this one outputs {w.spec.net.out_dim}")
            audio = w.spec.audio
            self.models[p], self.sha256[p] = w.model.eval(), w.sha256
        assert audio is not None
        self.audio = audio

    def part_fn(self, part: str) -> EmbedFn:
        return model_embed_fn(self.models[part], self.audio, self.device, self.batch_size)

    @torch.inference_mode()
    def concat(self, clips: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(clips), dtype=torch.float32)
        out = []
        for i in range(0, len(x), self.batch_size):
            mel = log_mel(x[i:i + self.batch_size].to(self.device), self.audio)
            out.append(torch.cat([self.models[p](mel) for p in PARTS], dim=-1).float().cpu())
        return torch.cat(out).numpy().astype(np.float32, copy=False)


def embedder_fn(embedder: Embedder) -> EmbedFn:
    """An :class:`Embedder` (a weights file) as an EmbedFn."""
    return embedder.embed_clips


def check_rates(rates: Mapping[str, int]) -> None:
    """All embedding functions must read audio at one rate (the dataset is decoded once)."""
    if len(set(rates.values())) > 1:
        listing = ", ".join(f"{k}: {v} Hz" for k, v in rates.items())
        raise WeightsError(f"the networks expect different sample rates ({listing})")
