"""Embedder: waveform(s) -> per-segment (N, 640) float32 embeddings and a track vector."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.audio import AudioConfig, log_mel, prepare
from model.audioio import segment_starts
from model.network import CSN, ModelSpec
from model.weights import Weights, load_weights

log = logging.getLogger(__name__)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class TrackEmbedding:
    """segments: (N, 640) float32; starts: (N,) seconds; track: (640,) mean of the segments."""

    segments: np.ndarray
    starts: np.ndarray
    track: np.ndarray
    window: float


def frame(wave: torch.Tensor, starts: np.ndarray, win: int) -> torch.Tensor:
    """(samples,) -> (len(starts), win) clips; a short tail is zero-padded."""
    if wave.shape[-1] < win:
        wave = torch.nn.functional.pad(wave, (0, win - wave.shape[-1]))
    return torch.stack([wave[s:s + win] for s in starts.tolist()])


class Embedder:
    """Embeds audio with a trained CSN. Uses CUDA when present, CPU otherwise."""

    def __init__(self, model: CSN, spec: ModelSpec, device: str | torch.device | None = None,
                 batch_size: int = 32, sha256: str = ""):
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.spec = spec
        self.batch_size = batch_size
        self.sha256 = sha256

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                  batch_size: int = 32) -> Embedder:
        w: Weights = load_weights(Path(path))
        return cls(w.model, w.spec, device=device, batch_size=batch_size, sha256=w.sha256)

    @property
    def audio(self) -> AudioConfig:
        return self.spec.audio

    @torch.inference_mode()
    def embed_clips(self, clips: torch.Tensor | np.ndarray) -> np.ndarray:
        """(B, samples) mono clips at the model's sample rate -> (B, 640) float32."""
        clips = torch.as_tensor(clips, dtype=torch.float32)
        if clips.dim() != 2:
            raise ValueError(f"expected (batch, samples), got {tuple(clips.shape)}")
        out = []
        for i in range(0, len(clips), self.batch_size):
            batch = clips[i:i + self.batch_size].to(self.device)
            out.append(self.model(log_mel(batch, self.audio)).float().cpu())
        emb = torch.cat(out) if out else torch.zeros(0, self.model.cfg.out_dim)
        return emb.numpy().astype(np.float32, copy=False)

    def embed(self, wave: np.ndarray, sr: int, window: float = 3.0, hop: float | None = None,
              max_windows: int | None = None) -> TrackEmbedding:
        """Decoded audio (samples[, channels]) at rate ``sr`` -> per-segment and track vectors."""
        mono = prepare(wave, sr, self.audio)
        if mono.numel() == 0:
            raise ValueError("empty audio: nothing to embed")
        rate = self.audio.sample_rate
        starts = segment_starts(mono.shape[-1], rate, window, hop, max_windows)
        clips = frame(mono, starts, int(round(window * rate)))
        seg = self.embed_clips(clips)
        assert seg.shape == (len(starts), self.model.cfg.out_dim)
        track = seg.mean(axis=0)
        return TrackEmbedding(segments=seg, starts=(starts / rate).astype(np.float32),
                              track=track.astype(np.float32), window=window)
