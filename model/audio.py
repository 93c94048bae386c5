"""The audio front end: waveform -> normalized dB mel spectrogram.

One place owns the analysis settings (window 2048, hop 512 as in the method). Trainer, evaluation
and app all call :func:`log_mel` (or :class:`LogMel`, the same thing as a module), so features
cannot drift apart. Runs batched on any torch device.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import torchaudio

from model.audioio import resample, to_mono

SAMPLE_RATE = 22050
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
F_MIN = 20.0
# dB re a full-scale sine, floored, then fixed normalization: (dB - DB_CENTER) / DB_SCALE
# maps [-80, 0] dB to [-1, 1].
DB_FLOOR = -80.0
DB_CENTER = -40.0
DB_SCALE = 40.0
AMIN = 1e-10
# rows of a batch the CPU front end computes at a time (see LogMel.forward)
CPU_ROWS = 1


@dataclass(frozen=True)
class AudioConfig:
    """Analysis settings; stored in every weights file so the app computes the same features."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    f_min: float = F_MIN

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AudioConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def frames(self, seconds: float) -> int:
        """Number of spectrogram frames for ``seconds`` of audio (centered STFT)."""
        return int(round(seconds * self.sample_rate)) // self.hop_length + 1


class LogMel(torch.nn.Module):
    """(B, samples) or (samples,) mono waveform at ``cfg.sample_rate`` -> (B, n_mels, frames)."""

    def __init__(self, cfg: AudioConfig = AudioConfig()):
        super().__init__()
        self.cfg = cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            f_min=cfg.f_min,
            f_max=cfg.sample_rate / 2,
            n_mels=cfg.n_mels,
            power=2.0,
            center=True,
            pad_mode="constant",
        )
        # A full-scale sine has STFT magnitude (sum of the Hann window) / 2 = n_fft / 4: take
        # that as 0 dB, so the fixed range [DB_FLOOR, 0] covers real music.
        self.ref_db = 20.0 * math.log10(cfg.n_fft / 4)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        squeeze = wave.dim() == 1
        if squeeze:
            wave = wave.unsqueeze(0)
        wave = wave.float()
        if wave.device.type == "cpu" and len(wave) > CPU_ROWS:
            # Row by row the spectrum of a clip stays in the processor's cache between the STFT,
            # the power and the mel product; a whole batch at once spills to memory and costs
            # 2-3x as much on a CPU (the scan's batch, 64 three-second clips at 4,096: about
            # 270 -> 120 ms, see bench/front_end.py). The result is the same: each row is
            # computed on its own either way.
            spec = torch.cat([self.mel(rows) for rows in wave.split(CPU_ROWS)])
        else:
            spec = self.mel(wave)
        db = 10.0 * torch.log10(spec.clamp_min(AMIN)) - self.ref_db
        out = (db.clamp_min(DB_FLOOR) - DB_CENTER) / DB_SCALE
        return out.squeeze(0) if squeeze else out


@lru_cache(maxsize=8)
def _front_end(cfg: AudioConfig, device: str) -> LogMel:
    return LogMel(cfg).to(device)


def log_mel(wave: torch.Tensor, cfg: AudioConfig = AudioConfig()) -> torch.Tensor:
    """Normalized dB mel spectrogram of ``wave`` (already at ``cfg.sample_rate``).

    Shapes: (samples,) -> (n_mels, frames); (B, samples) -> (B, n_mels, frames).
    """
    return _front_end(cfg, str(wave.device))(wave)


def prepare(wave: np.ndarray, sr: int, cfg: AudioConfig = AudioConfig()) -> torch.Tensor:
    """Any decoded audio (samples[, channels]) at any rate -> mono float32 tensor at cfg rate."""
    return torch.from_numpy(resample(to_mono(wave), sr, cfg.sample_rate))
