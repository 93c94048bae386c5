"""Masks on the training mixes' spectrograms (SpecAugment's frequency and time masks).

Each row of a batch gets its own masks, drawn from the step's generator so a resumed run draws
what an unbroken one would: up to ``bands`` adjacent mel bands silenced ``freq_masks`` times,
and up to ``share`` of the frames silenced ``time_masks`` times. A masked cell is set to the
front end's floor, the value a silent band or frame has, so a mask reads as a notch or a gap in
the sound, never as a level the mix could not have. With a pitch channel the same cells are
silenced in both channels (the rows of the two are read side by side by the first block).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.audio import DB_CENTER, DB_FLOOR, DB_SCALE

SILENCE = (DB_FLOOR - DB_CENTER) / DB_SCALE  # what model.audio.log_mel gives a silent cell


@dataclass(frozen=True)
class SpecMasks:
    freq_masks: int = 0  # masks across the mel bands per row
    bands: int = 0  # each at most this many adjacent bands wide
    time_masks: int = 0  # masks across the frames per row
    share: float = 0.0  # each at most this share of the frames wide

    def __post_init__(self) -> None:
        if self.freq_masks < 0 or self.time_masks < 0:
            raise ValueError(f"spectrogram masks: need counts >= 0, got {self.freq_masks} across the "
                             f"bands and {self.time_masks} across the frames")
        if self.freq_masks and self.bands < 1:
            raise ValueError(f"mask_bands: frequency masks need a width of at least 1 band, got {self.bands}")
        if self.time_masks and not (0.0 < self.share < 1.0):
            raise ValueError(f"mask_time_share: time masks need a share of the frames in (0, 1), "
                             f"got {self.share}")

    @property
    def on(self) -> bool:
        return bool(self.freq_masks or self.time_masks)


def _spans(rng: np.random.Generator, rows: int, masks: int, width: int, length: int) -> np.ndarray:
    """(rows, length) bool: per row ``masks`` spans, each of a width drawn from 0..``width``
    (capped at ``length``) at a start drawn uniformly among those that keep it inside."""
    out = np.zeros((rows, length), dtype=bool)
    width = min(width, length)
    if not masks or width < 1:
        return out
    w = rng.integers(0, width + 1, size=(rows, masks))
    start = rng.integers(0, length - w + 1)  # each span's own upper bound
    idx = np.arange(length)
    for k in range(masks):
        out |= (idx >= start[:, k, None]) & (idx < (start[:, k] + w[:, k])[:, None])
    return out


def mask_spectrogram(mel: torch.Tensor, rng: np.random.Generator, masks: SpecMasks) -> torch.Tensor:
    """``mel`` (B, bands, frames) or (B, channels, bands, frames) from model.audio.log_mel, with
    each row's masks silenced (a new tensor; the input is not changed)."""
    if not masks.on:
        return mel
    rows, bands, frames = mel.shape[0], mel.shape[-2], mel.shape[-1]
    freq = _spans(rng, rows, masks.freq_masks, masks.bands, bands)
    time = _spans(rng, rows, masks.time_masks, int(masks.share * frames), frames)
    cells = torch.from_numpy(freq[:, :, None] | time[:, None, :]).to(mel.device)
    if mel.dim() == 4:
        cells = cells[:, None]
    return mel.masked_fill(cells, SILENCE)
