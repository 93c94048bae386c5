"""The audio front end: waveform -> normalized dB mel spectrogram.

One place owns the analysis settings (window 2048, hop 512 as in the method). Trainer, evaluation
and app all call :func:`log_mel` (or :class:`LogMel`, the same thing as a module), so features
cannot drift apart. Runs batched on any torch device.

With ``pitch`` on, a second channel reads the same power spectrum on log-spaced bands from A0 to
C8 (:func:`pitch_fbanks`): about 1.5 bands a semitone over the whole piano range, where mel bands
below ~300 Hz are wider than a semitone (17 Hz apart near 200 Hz), so the notes of a bass line or
a left hand blur together on the mel rows alone.
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
# the pitch channel's range: the piano's, A0 to C8
PITCH_F_MIN = 27.5
PITCH_F_MAX = 4186.0


@dataclass(frozen=True)
class AudioConfig:
    """Analysis settings; stored in every weights file so the app computes the same features."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    f_min: float = F_MIN
    pitch: bool = False  # a second channel on log-spaced bands A0-C8 (pitch_fbanks)

    @property
    def channels(self) -> int:
        """Channels of the front end's output: the mel rows, and with ``pitch`` the pitch rows."""
        return 2 if self.pitch else 1

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.pitch:  # the mel front end alone: cards (and their checksums) as before
            del d["pitch"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AudioConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def frames(self, seconds: float) -> int:
        """Number of spectrogram frames for ``seconds`` of audio (centered STFT)."""
        return int(round(seconds * self.sample_rate)) // self.hop_length + 1


def pitch_fbanks(cfg: AudioConfig) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) filters of the pitch channel: ``n_mels`` triangles centred on
    log-spaced frequencies from PITCH_F_MIN to PITCH_F_MAX, peak 1 (as the mel filters), each
    reaching to its neighbours' centres but never narrower than one STFT bin to each side, so a
    band narrower than the bins interpolates the power between the two bins around it instead of
    reading nothing."""
    n_freqs, bin_hz = cfg.n_fft // 2 + 1, cfg.sample_rate / cfg.n_fft
    top = min(PITCH_F_MAX, cfg.sample_rate / 2 - bin_hz)
    centres = np.geomspace(PITCH_F_MIN, top, cfg.n_mels)
    edges = np.concatenate([[centres[0] ** 2 / centres[1]], centres, [centres[-1] ** 2 / centres[-2]]])
    freqs = np.arange(n_freqs) * bin_hz
    lo = np.maximum(edges[1:-1] - edges[:-2], bin_hz)
    hi = np.maximum(edges[2:] - edges[1:-1], bin_hz)
    d = freqs[:, None] - centres[None, :]
    fb = np.clip(np.minimum(1 + d / lo, 1 - d / hi), 0.0, None)
    return torch.as_tensor(fb, dtype=torch.float32)


class LogMel(torch.nn.Module):
    """(B, samples) or (samples,) mono waveform at ``cfg.sample_rate`` -> (B, n_mels, frames),
    or with ``cfg.pitch`` (B, 2, n_mels, frames): the mel rows, then the pitch rows."""

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
        if cfg.pitch:
            self.register_buffer("pitch_fb", pitch_fbanks(cfg), persistent=False)

    def _power(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> power on the mel rows (B, n_mels, frames), or with the pitch rows
        stacked after them (B, 2, n_mels, frames): one STFT for both."""
        if not self.cfg.pitch:
            return self.mel(wave)
        spec = self.mel.spectrogram(wave)  # (B, freqs, frames)
        mel = self.mel.mel_scale(spec)
        pitch = torch.matmul(spec.transpose(-1, -2), self.pitch_fb).transpose(-1, -2)
        return torch.stack([mel, pitch], dim=1)

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
            spec = torch.cat([self._power(rows) for rows in wave.split(CPU_ROWS)])
        else:
            spec = self._power(wave)
        db = 10.0 * torch.log10(spec.clamp_min(AMIN)) - self.ref_db
        out = (db.clamp_min(DB_FLOOR) - DB_CENTER) / DB_SCALE
        return out.squeeze(0) if squeeze else out


@lru_cache(maxsize=8)
def _front_end(cfg: AudioConfig, device: str) -> LogMel:
    return LogMel(cfg).to(device)


def log_mel(wave: torch.Tensor, cfg: AudioConfig = AudioConfig()) -> torch.Tensor:
    """Normalized dB mel spectrogram of ``wave`` (already at ``cfg.sample_rate``).

    Shapes: (samples,) -> (n_mels, frames); (B, samples) -> (B, n_mels, frames); with
    ``cfg.pitch`` a channel axis after the batch's: (2, n_mels, frames), (B, 2, n_mels, frames).
    """
    return _front_end(cfg, str(wave.device))(wave)


def prepare(wave: np.ndarray, sr: int, cfg: AudioConfig = AudioConfig()) -> torch.Tensor:
    """Any decoded audio (samples[, channels]) at any rate -> mono float32 tensor at cfg rate."""
    return torch.from_numpy(resample(to_mono(wave), sr, cfg.sample_rate))
