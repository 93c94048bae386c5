"""Embedding functions to evaluate: a CSN (in training or from a file), the individual
networks, the MFCC-statistics baseline, and the clean stems' spectral shape (a reference for the
effective dimension). Each is an ``EmbedFn``: (B, samples) float32 clips at
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
from model.network import CSN, ModelSpec
from model.parts import PARTS, SUBSPACE_DIM
from model.weights import WeightsError, load_weights
from trainer.evaluate.segments import EmbedFn

log = logging.getLogger(__name__)


class MelCache:
    """The log-mel of the latest clip batch, per front-end setting and device.

    The MFCC baseline and the five individual networks run together (:meth:`IndividualNets.concat`)
    read the very same batch; sharing the front end computes it once for them. (The CSN and
    each individual network alone embed by the app's path, :func:`model_embed_fn`.)
    The cache holds one batch: a new array object replaces it.
    """

    def __init__(self) -> None:
        self._clips: np.ndarray | None = None
        self._mels: dict[tuple[AudioConfig, str], torch.Tensor] = {}

    def __call__(self, clips: np.ndarray, audio: AudioConfig, device: torch.device
                 ) -> torch.Tensor:
        """(B, samples) -> (B, n_mels, frames) on ``device``."""
        if clips is not self._clips:
            self._clips, self._mels = clips, {}
        key = (audio, str(device))
        if key not in self._mels:
            x = torch.as_tensor(np.asarray(clips), dtype=torch.float32).to(device)
            self._mels[key] = log_mel(x, audio)
        return self._mels[key]


def _mel(clips: np.ndarray, audio: AudioConfig, device: torch.device,
         cache: MelCache | None) -> torch.Tensor:
    if cache is not None:
        return cache(clips, audio, device)
    x = torch.as_tensor(np.asarray(clips), dtype=torch.float32).to(device)
    return log_mel(x, audio)


def model_embed_fn(model: CSN, audio: AudioConfig, device: str | torch.device | None = None,
                   batch_size: int = 32) -> EmbedFn:
    """Wrap a network (e.g. the one being trained) as an EmbedFn that embeds by the app's own
    path, :meth:`model.embedder.Embedder.embed_clips`.

    Runs in eval mode without gradients and puts the model back in the mode it was in, so the
    trainer can call it between steps.
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    spec = ModelSpec(net=model.cfg, audio=audio)

    def embed(clips: np.ndarray) -> np.ndarray:
        was_training = model.training
        try:
            return Embedder(model, spec, device=dev, batch_size=batch_size).embed_clips(clips)
        finally:
            model.train(was_training)

    return embed


class MFCCStats:
    """Classical timbre baseline: mean and standard deviation over time of ``n_mfcc`` MFCCs.

    (B, samples) -> (B, 2 * n_mfcc). The MFCCs are the orthonormal DCT-II of the dB mel
    spectrogram ``audio`` describes (the report passes a fixed front end, not the model's:
    :func:`trainer.evaluate.report.mfcc_front_end`); a shared :class:`MelCache` computes it once
    for everything that reads the same front end.
    """

    def __init__(self, audio: AudioConfig, n_mfcc: int = 20,
                 device: str | torch.device | None = None, cache: MelCache | None = None):
        if not 1 <= n_mfcc <= audio.n_mels:
            raise ValueError(f"n_mfcc must be within 1..{audio.n_mels}, got {n_mfcc}")
        self.device = torch.device(device) if device is not None else default_device()
        self.audio, self.n_mfcc, self.cache = audio, n_mfcc, cache
        self.dct = torchaudio.functional.create_dct(n_mfcc, audio.n_mels, norm="ortho").to(
            self.device)  # (n_mels, n_mfcc)

    @torch.inference_mode()
    def __call__(self, clips: np.ndarray) -> np.ndarray:
        if len(clips) == 0:
            return np.zeros((0, 2 * self.n_mfcc), np.float32)
        mel = _mel(clips, self.audio, self.device, self.cache)  # (B, n_mels, frames)
        m = torch.einsum("bft,fc->bct", mel.float(), self.dct)  # (B, n_mfcc, frames)
        feats = torch.cat([m.mean(dim=-1), m.std(dim=-1, unbiased=False)], dim=-1)
        return feats.cpu().numpy().astype(np.float32, copy=False)


class SpectralShape:
    """The spectral shape of a clip: its dB mel spectrum averaged over time, less its mean over
    the bands (so the clip's level drops out). (B, samples) -> (B, n_mels).

    Not a baseline to rank with: the report measures the effective dimension of these vectors on
    each part's clean stems as a reference for the data's own timbral variety (a part whose
    stems span few spectral directions gives its subspace little to spread over). Reads the
    MFCC baseline's front end through the shared :class:`MelCache`.
    """

    def __init__(self, audio: AudioConfig, device: str | torch.device | None = None,
                 cache: MelCache | None = None):
        self.device = torch.device(device) if device is not None else default_device()
        self.audio, self.cache = audio, cache

    @torch.inference_mode()
    def __call__(self, clips: np.ndarray) -> np.ndarray:
        if len(clips) == 0:
            return np.zeros((0, self.audio.n_mels), np.float32)
        mean = _mel(clips, self.audio, self.device, self.cache).float().mean(dim=-1)
        shape = mean - mean.mean(dim=-1, keepdim=True)
        return shape.cpu().numpy().astype(np.float32, copy=False)


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
                 batch_size: int = 32, cache: MelCache | None = None):
        self.folder = individual_dir(folder)
        self.cache = cache
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
        """(B, samples) -> (B, 640): network j's output in subspace j."""
        if len(clips) == 0:
            return np.zeros((0, len(PARTS) * SUBSPACE_DIM), np.float32)
        mel = _mel(clips, self.audio, self.device, self.cache)
        out = [torch.cat([self.models[p](mel[i:i + self.batch_size]) for p in PARTS],
                         dim=-1).float().cpu()
               for i in range(0, len(mel), self.batch_size)]
        return torch.cat(out).numpy().astype(np.float32, copy=False)


def check_rates(rates: Mapping[str, int]) -> None:
    """All embedding functions must read audio at one rate (the dataset is decoded once)."""
    if len(set(rates.values())) > 1:
        listing = ", ".join(f"{k}: {v} Hz" for k, v in rates.items())
        raise WeightsError(f"the networks expect different sample rates ({listing})")
