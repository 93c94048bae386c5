"""Hand-built test material for the evaluation tests: a tone dataset and oracle embeddings.

Track t, part j is one sine at ``tone(j, slot)`` inside part j's own frequency band, with
``slot = (t * (2j + 1) + j) % SLOTS`` so every part of every track has its own pitch. The oracle reads
the spectrum back: subspace j is a one-hot of the slot found in band j (zero when the band is
silent), so it knows exactly which track each part came from and nothing else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from model.parts import N_PARTS, PARTS, SUBSPACE_DIM

SR = 8000
SLOTS = 16
BAND_LO = 200.0
BAND_STEP = 700.0
SLOT_HZ = 40.0


def tone(part: int, slot: int) -> float:
    return BAND_LO + BAND_STEP * part + SLOT_HZ * slot


def slot_of(track: int, part: int) -> int:
    return (track * (2 * part + 1) + part) % SLOTS


@dataclass(frozen=True)
class FakeTrack:
    name: str
    split: str
    path: str
    tempo: float
    tempo_class: int
    duration: float
    sample_rate: int
    present: tuple[bool, ...]
    font: str
    source: str


class ToneDataset:
    """n tracks of ``seconds`` s; ``absent`` = {(track, part)} silent throughout;
    ``gaps`` = {(track, part): (t0, t1)} silent between t0 and t1 seconds."""

    sample_rate = SR

    def __init__(self, n_tracks: int = 8, seconds: float = 12.0, absent=(), gaps=None,
                 amplitude: float = 0.2):
        self.n = int(seconds * SR)
        self.absent = set(absent)
        self.gaps = dict(gaps or {})
        self.amplitude = amplitude
        self.tracks = [
            FakeTrack(f"Track{t:05d}", "test", f"Track{t:05d}", 90.0 + 5 * (t % 2), t % 2,
                      seconds, SR, tuple((t, j) not in self.absent for j in range(N_PARTS)),
                      "tone", "fake")
            for t in range(n_tracks)
        ]
        self.loads = 0

    def __len__(self) -> int:
        return len(self.tracks)

    def load_parts(self, i: int) -> np.ndarray:
        self.loads += 1
        t = np.arange(self.n) / SR
        parts = np.zeros((N_PARTS, self.n), np.float32)
        for j in range(N_PARTS):
            if (i, j) in self.absent:
                continue
            parts[j] = self.amplitude * np.sin(2 * np.pi * tone(j, slot_of(i, j)) * t)
            if (i, j) in self.gaps:
                a, b = self.gaps[(i, j)]
                parts[j, int(a * SR):int(b * SR)] = 0.0
        return parts

    def load_mix(self, i: int) -> np.ndarray:
        return self.load_parts(i).sum(axis=0)


def activity(parts: np.ndarray, sr: int, window: float, hop: float | None = None) -> np.ndarray:
    """(5, n) -> (5, n_windows) RMS above -40 dBFS per window (the loader's contract)."""
    win = int(round(window * sr))
    step = int(round((hop or window) * sr))
    n = max(1, (parts.shape[1] - win) // step + 1)
    out = np.zeros((parts.shape[0], n), bool)
    for w in range(n):
        seg = parts[:, w * step:w * step + win]
        out[:, w] = np.sqrt(np.mean(seg ** 2, axis=1)) > 0.01
    return out


def _slot_energy(clips: np.ndarray) -> np.ndarray:
    """(B, samples) -> (B, 5, SLOTS) spectral magnitude at each part's slot tones."""
    spec = np.abs(np.fft.rfft(clips, axis=1))
    freqs = np.fft.rfftfreq(clips.shape[1], 1.0 / SR)
    out = np.zeros((len(clips), N_PARTS, SLOTS))
    for j in range(N_PARTS):
        for s in range(SLOTS):
            b = int(np.argmin(np.abs(freqs - tone(j, s))))
            out[:, j, s] = spec[:, max(0, b - 2):b + 3].max(axis=1)
    return out


def _one_hots(clips: np.ndarray) -> np.ndarray:
    """(B, samples) -> (B, 5, SLOTS): one-hot of the loudest slot per band, zero if silent."""
    energy = _slot_energy(np.asarray(clips, np.float64))
    hot = np.zeros_like(energy)
    best = energy.argmax(axis=2)
    loud = energy.max(axis=2) > 0.01 * clips.shape[1]
    b, j = np.nonzero(loud)
    hot[b, j, best[b, j]] = 1.0
    return hot


def oracle(clips: np.ndarray) -> np.ndarray:
    """Perfectly separated embedding: subspace j = one-hot of band j's slot."""
    hot = _one_hots(clips)
    out = np.zeros((len(clips), N_PARTS, SUBSPACE_DIM), np.float32)
    out[:, :, :SLOTS] = hot
    return out.reshape(len(clips), -1)


def leaky(clips: np.ndarray) -> np.ndarray:
    """Every subspace holds every band's one-hot: it identifies tracks but does not separate."""
    hot = _one_hots(clips).reshape(len(clips), -1)  # (B, 80)
    out = np.zeros((len(clips), N_PARTS, SUBSPACE_DIM), np.float32)
    out[:, :, :hot.shape[1]] = hot[:, None, :]
    return out.reshape(len(clips), -1)


def noise(clips: np.ndarray) -> np.ndarray:
    """A deterministic random vector per clip, unrelated to its content."""
    seeds = [int.from_bytes(hashlib.sha1(np.ascontiguousarray(c).tobytes()).digest()[:8], "little")
             for c in clips]
    return np.stack([np.random.default_rng(s).normal(size=N_PARTS * SUBSPACE_DIM)
                     for s in seeds]).astype(np.float32)


def constant(clips: np.ndarray) -> np.ndarray:
    return np.ones((len(clips), N_PARTS * SUBSPACE_DIM), np.float32)


def per_part(j: int):
    """A 128-d 'individual network' for part j: the one-hot of band j only."""
    def embed(clips: np.ndarray) -> np.ndarray:
        return oracle(clips)[:, j * SUBSPACE_DIM:(j + 1) * SUBSPACE_DIM]
    return embed


assert len(PARTS) == N_PARTS
