"""Embedder: the one embedding path. Clips in; segment vectors, track vector and presence out.

The library's scan, the tests and :meth:`Embedder.embed` (whole decoded audio) all go through
:meth:`Embedder.embed_tracks`: one batched forward pass over the clips of one or many tracks,
then per track the segment vectors (N, 640), the track vector (their mean) and the presence of
each part (:func:`model.parts.track_presence`: the mean over the track's windows of each window's presence,
:func:`model.parts.presence` with the card's norm-loss biases when it has them).

A model that answers with NaN or infinity raises :class:`NonFiniteError` naming the tracks it
failed on; :meth:`Embedder.check` runs the model once on made-up audio so a broken model is
caught before anything is stored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.audio import AudioConfig, log_mel, prepare
from model.audioio import segment_starts
from model.network import CSN, ModelSpec
from model.parts import EMBED_DIM, N_PARTS, track_presence
from model.weights import DEFAULT_WINDOW, Weights, load_weights, training_window

log = logging.getLogger(__name__)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class NonFiniteError(ValueError):
    """The model produced NaN or infinity; ``tracks`` holds the indices of the tracks affected."""

    def __init__(self, message: str, tracks: Sequence[int]):
        super().__init__(message)
        self.tracks = list(tracks)


@dataclass
class TrackEmbedding:
    """segments: (N, 640) float32; starts: (N,) seconds; track: (640,) mean of the segments;
    presence: (5,) float32 in [0, 1] (:func:`model.parts.track_presence`)."""

    segments: np.ndarray
    starts: np.ndarray
    track: np.ndarray
    presence: np.ndarray


def frame(wave: torch.Tensor, starts: np.ndarray, win: int) -> torch.Tensor:
    """(samples,) -> (len(starts), win) clips; a short tail is zero-padded."""
    if wave.shape[-1] < win:
        wave = torch.nn.functional.pad(wave, (0, win - wave.shape[-1]))
    return torch.stack([wave[s:s + win] for s in starts.tolist()])


def _card_norm_bias(card: dict, path: str | os.PathLike) -> list[float] | None:
    bias = card.get("norm_bias")
    if bias is not None and len(bias) != N_PARTS:
        log.warning("%s: card norm_bias has %d values, expected %d; ignoring it", path, len(bias), N_PARTS)
        return None
    return bias


class Embedder:
    """Embeds audio with a trained CSN. Uses CUDA when present, CPU otherwise.

    ``norm_bias``: the trained norm-loss biases (b_1..b_5) that turn part norms into presence;
    None falls back to norms relative to the largest (see :func:`model.parts.presence`).
    """

    def __init__(self, model: CSN, spec: ModelSpec, device: str | torch.device | None = None,
                 batch_size: int = 32, sha256: str = "", norm_bias: Sequence[float] | None = None,
                 window: float = DEFAULT_WINDOW):
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        # what embed_clips runs: on the CPU a folded, channels-last copy made now (about twice
        # as fast, the same answers to float rounding; CSN.for_inference), so a model changed
        # after this is not seen; elsewhere the model itself
        self.net = model.for_inference() if self.device.type == "cpu" and isinstance(model, CSN) \
            else self.model
        self.spec = spec
        self.batch_size = batch_size
        self.sha256 = sha256
        self.norm_bias = norm_bias
        self.window = window  # seconds: the pieces it was trained on, its default window

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                  batch_size: int = 32) -> Embedder:
        w: Weights = load_weights(Path(path))
        return cls(w.model, w.spec, device=device, batch_size=batch_size, sha256=w.sha256,
                   norm_bias=_card_norm_bias(w.card, path), window=training_window(w.card, path))

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
            out.append(self.net(log_mel(batch, self.audio)).float().cpu())
        emb = torch.cat(out) if out else torch.zeros(0, self.model.cfg.out_dim)
        return emb.numpy().astype(np.float32, copy=False)

    def embed_tracks(self, clips: Sequence[np.ndarray], starts: Sequence[np.ndarray]) -> list[TrackEmbedding]:
        """The analysis windows of several tracks -> one :class:`TrackEmbedding` per track.

        clips[t]: (K_t, samples) mono float32 at the model's sample rate; starts[t]: (K_t,)
        seconds. All clips go through the network together (batches span tracks).
        :class:`NonFiniteError` when the model answers with non-finite numbers.
        """
        counts = [len(c) for c in clips]
        if not counts or min(counts) == 0:
            raise ValueError("every track needs at least one clip to embed")
        seg = self.embed_clips(np.concatenate(clips))
        assert seg.shape == (sum(counts), EMBED_DIM)
        finite = np.isfinite(seg).all(axis=1)
        if not finite.all():
            ends = np.cumsum(counts)
            bad = [t for t, (a, b) in enumerate(zip(ends - counts, ends, strict=True)) if not finite[a:b].all()]
            raise NonFiniteError(f"the model produced non-finite embeddings (NaN or inf) for "
                                 f"{len(bad)} of {len(counts)} tracks", bad)
        out, at = [], 0
        for k, st in zip(counts, starts, strict=True):
            s = seg[at:at + k]
            at += k
            track = s.mean(axis=0).astype(np.float32)
            out.append(TrackEmbedding(segments=s, starts=np.asarray(st, np.float32), track=track,
                                      presence=track_presence(s, self.norm_bias)))
        return out

    def check(self, window: float | None = None) -> None:
        """Run the model on made-up audio (silence, noise, a tone: (3, window * rate); by default
        its own window) and raise :class:`NonFiniteError` when it answers with NaN or infinity."""
        window = window or self.window
        rate = self.audio.sample_rate
        n = int(round(window * rate))
        t = np.arange(n, dtype=np.float32) / rate
        probe = np.stack([np.zeros(n, np.float32),
                          0.1 * np.random.default_rng(0).standard_normal(n).astype(np.float32),
                          0.3 * np.sin(2 * np.pi * 220.0 * t)])
        self.embed_tracks([probe], [np.arange(3, dtype=np.float32) * window])

    def embed(self, wave: np.ndarray, sr: int, window: float | None = None, hop: float | None = None,
              max_windows: int | None = None) -> TrackEmbedding:
        """Decoded audio (samples[, channels]) at rate ``sr`` -> its :class:`TrackEmbedding`,
        windowed like the scan (:func:`model.audioio.segment_starts`; windows of the model's
        own length unless ``window`` says otherwise)."""
        window = window or self.window
        mono = prepare(wave, sr, self.audio)
        if mono.numel() == 0:
            raise ValueError("empty audio: nothing to embed")
        rate = self.audio.sample_rate
        starts = segment_starts(mono.shape[-1], rate, window, hop, max_windows)
        clips = frame(mono, starts, int(round(window * rate))).numpy()
        (out,) = self.embed_tracks([clips], [starts / rate])
        return out
