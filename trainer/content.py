"""The content term: a part's subspace must tell which notes its part plays.

The metric terms (triplet, contrastive, spread, invariance, stem) only ask which pieces share a
part. None says *what* in a part makes two songs' parts differ, and on POP909 the piano
accompaniments that the network fails to separate are the parts written most alike from song to
song (``partwise-train data identity``): what does differ is their harmony and its rhythm. This
term asks the subspace of each named part to carry them: a linear read-out of the subspace
predicts the pitch-class profile (chroma) of the part's clean stem in a few time slices of the
segment, from the *mix*. A linear read-out, so that what it reads lies along directions of the
subspace and moves distances there (a deeper head could decode it from anywhere). The stem's
audio comes from the stem bank, so the targets cost one STFT per part and row, no network.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.parts import PARTS, SUBSPACE_DIM, stack_parts
from trainer.bank import audible

N_CHROMA = 12
CHROMA_FFT = 4096  # 0.26 s at 16 kHz: 3.9 Hz bins, a semitone apart from about 70 Hz up
CHROMA_HOP = 1024
CHROMA_FMIN_HZ = 80.0
CHROMA_FMAX_HZ = 2500.0


@functools.lru_cache(maxsize=4)
def _pitch_class_map(n_fft: int, sample_rate: int) -> torch.Tensor:
    """(bins, 12): each rfft bin between ``CHROMA_FMIN_HZ`` and ``CHROMA_FMAX_HZ`` to the pitch
    class of its nearest equal-tempered note (A4 = 440 Hz; class 0 = C); other bins to none."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    out = np.zeros((len(freqs), N_CHROMA), dtype=np.float32)
    band = (freqs >= CHROMA_FMIN_HZ) & (freqs <= CHROMA_FMAX_HZ)
    notes = np.round(12 * np.log2(freqs[band] / 440.0)).astype(int) + 69
    out[np.flatnonzero(band), notes % N_CHROMA] = 1.0
    return torch.from_numpy(out)


def chroma_slices(x: torch.Tensor, sample_rate: int, slices: int, threshold_db: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips (K, samples) -> (pitch-class distributions (K, slices, 12), weights (K, slices)).

    Each clip is cut into ``slices`` equal spans; a span's distribution is its STFT magnitude
    summed per pitch class and normalised to sum 1. A span whose power is not above
    ``threshold_db`` dBFS (eq. 6's audibility) has weight 0, else 1.
    """
    k, n = x.shape
    win = torch.hann_window(CHROMA_FFT, device=x.device)
    mag = torch.stft(x.float(), CHROMA_FFT, CHROMA_HOP, window=win, center=True,
                     return_complex=True).abs()  # (K, bins, frames)
    chroma = torch.einsum("kft,fc->ktc", mag, _pitch_class_map(CHROMA_FFT, sample_rate).to(x.device))
    frames = chroma.shape[1]
    edges = np.linspace(0, frames, slices + 1).round().astype(int)
    prof = torch.stack([chroma[:, a:b].sum(1) for a, b in zip(edges[:-1], edges[1:], strict=True)], 1)
    prof = prof / prof.sum(-1, keepdim=True).clamp_min(1e-8)
    span = n // slices
    weight = audible(x[:, : span * slices].reshape(k, slices, span), threshold_db).float()
    return prof, weight


class ContentHead(nn.Module):
    """One linear read-out per named part: its 128-d subspace -> ``slices`` x 12 logits.

    ``temperature`` 0: a free read-out, from zero. ``temperature`` T > 0: a *held* read-out,
    logits = W z / T + b with W's rows orthonormal (it may turn, not grow). A free read-out can
    make its logits as large as it likes from a direction the subspace barely uses, so what it
    reads may carry almost none of the distance between two pieces. A held one reads each note's
    logit from one unit direction at a fixed scale: a confident prediction needs the subspace to
    have length along W's rows, that is, the notes take a share of the distances (at T = 0.1, a
    logit margin of 2 between two notes needs 0.2 / sqrt(2) = 0.14 of length; the triplet
    margin is 0.2).
    """

    def __init__(self, parts: tuple[str, ...], slices: int, dim: int = SUBSPACE_DIM,
                 temperature: float = 0.0):
        super().__init__()
        unknown = [p for p in parts if p not in PARTS]
        if unknown or not parts:
            raise ValueError(f"content parts {list(parts)}: choose one or more of {', '.join(PARTS)}")
        if temperature < 0 or (temperature and slices * N_CHROMA > dim):
            raise ValueError(f"content read-out: temperature {temperature} must be >= 0, and a held "
                             f"one needs slices x 12 <= {dim} (got {slices} slices)")
        self.parts, self.slices, self.temperature = tuple(parts), slices, temperature
        self.heads = nn.ModuleDict({p: nn.Linear(dim, slices * N_CHROMA) for p in parts})
        for h in self.heads.values():
            nn.init.zeros_(h.bias)
            if temperature:  # orthonormal rows from a random start, kept so by the parametrisation
                nn.utils.parametrizations.orthogonal(h, "weight")
            else:  # from zero: uniform predictions, and no push on the subspaces until the
                # read-outs have learned what the subspaces already hold
                nn.init.zeros_(h.weight)

    def forward(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """(M, 640) embeddings -> per named part, (M, slices, 12) logits of its pitch classes
        (every read-out in one call, so a distributed step uses all of them)."""
        sub = stack_parts(emb)
        scale = 1.0 / self.temperature if self.temperature else 1.0
        return {p: (F.linear(sub[:, PARTS.index(p)], h.weight) * scale + h.bias)
                .reshape(len(emb), self.slices, N_CHROMA) for p, h in self.heads.items()}


def content_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence of the predicted pitch-class distributions (softmax of ``logits``,
    (M, S, 12)) from the target ones (M, S, 12), over spans of positive ``weight`` (M, S): 0 when
    every prediction is exact, whatever the targets' own spread. 0 when no span counts."""
    logp = torch.log_softmax(logits, dim=-1)
    kl = (target * (torch.log(target.clamp_min(1e-8)) - logp)).sum(-1)  # (M, S)
    return (kl * weight).sum() / weight.sum().clamp_min(1.0)


__all__ = ["ContentHead", "chroma_slices", "content_loss"]
