"""The five instrument parts and their subspaces of the 640-d embedding.

The order is fixed by the method: ``drums [0:128) | bass [128:256) | piano [256:384) |
guitar [384:512) | others [512:640)``. Everything else in Partwise imports it from here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:  # torch is imported by whoever hands in tensors, not by this module
    import torch

PARTS: tuple[str, ...] = ("drums", "bass", "piano", "guitar", "others")
N_PARTS = len(PARTS)
SUBSPACE_DIM = 128
EMBED_DIM = N_PARTS * SUBSPACE_DIM

ArrayT = TypeVar("ArrayT", bound=object)  # numpy arrays, or torch tensors for the losses


def _is_tensor(x: object) -> bool:
    """A torch tensor (torch need not be imported: a tensor can only exist once it is)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def part_index(part: str) -> int:
    """Index of ``part`` in :data:`PARTS`; a clear error for an unknown name."""
    try:
        return PARTS.index(part)
    except ValueError:
        raise ValueError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}") from None


def part_slice(part: str | int, dim: int = SUBSPACE_DIM) -> slice:
    """The columns of the embedding that belong to ``part``."""
    i = part if isinstance(part, int) else part_index(part)
    if not 0 <= i < N_PARTS:
        raise ValueError(f"part index {i} out of range 0..{N_PARTS - 1}")
    return slice(i * dim, (i + 1) * dim)


def split(embedding: ArrayT) -> dict[str, ArrayT]:
    """Split a (..., 640) embedding into ``{part: (..., 128)}`` views, in :data:`PARTS` order."""
    if embedding.shape[-1] != EMBED_DIM:
        raise ValueError(f"expected last dimension {EMBED_DIM}, got {tuple(embedding.shape)}")
    return {p: embedding[..., part_slice(i)] for i, p in enumerate(PARTS)}


def stack_parts(embedding: ArrayT) -> ArrayT:
    """Reshape (..., 640) to (..., 5, 128): one row per part."""
    if embedding.shape[-1] != EMBED_DIM:
        raise ValueError(f"expected last dimension {EMBED_DIM}, got {tuple(embedding.shape)}")
    return embedding.reshape(*embedding.shape[:-1], N_PARTS, SUBSPACE_DIM)


def masks(device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """All five masks m_c (eq. 4) as a (5, 640) tensor: row c is 1 on subspace c, 0 elsewhere
    (float32 unless ``dtype`` says otherwise)."""
    import torch

    dtype = dtype or torch.float32
    eye = torch.eye(N_PARTS, device=device, dtype=dtype)
    return eye.repeat_interleave(SUBSPACE_DIM, dim=1)


def mask(part: str | int, device: torch.device | str | None = None) -> torch.Tensor:
    """The (640,) mask m_c for one part."""
    i = part if isinstance(part, int) else part_index(part)
    return masks(device)[i]


def part_norms(embedding: ArrayT) -> ArrayT:
    """L2 norm of each subspace: (..., 640) -> (..., 5). Small norm = part absent (Table 3)."""
    stacked = stack_parts(embedding)
    if _is_tensor(stacked):
        return stacked.norm(dim=-1)
    return np.linalg.norm(stacked, axis=-1)


def part_sq_norms(x: np.ndarray) -> np.ndarray:
    """(..., 640) -> (..., 5) float32 squared norm of each part subspace."""
    stacked = stack_parts(np.asarray(x, np.float32))
    return np.einsum("...pd,...pd->...p", stacked, stacked)


def part_sq_distances(q: np.ndarray, x: np.ndarray, x_sq: np.ndarray | None = None) -> np.ndarray:
    """Squared distance in each part between q and every row of x.

    q: (640,) -> (N, 5), or (n, 640) -> (n, N, 5); x: (N, 640). Expands ||q_c - x_c||^2 =
    ||q_c||^2 + ||x_c||^2 - 2 q_c.x_c; pass ``x_sq`` (N, 5), the rows' :func:`part_sq_norms`,
    when they are at hand. Clamped at 0. (einsum, not a matrix product: for these skinny shapes
    BLAS spends more on its threads than on the arithmetic.)
    """
    q = np.asarray(q, np.float32)
    x = np.asarray(x, np.float32)
    qs = q.reshape(-1, EMBED_DIM)
    if x_sq is None:
        x_sq = part_sq_norms(x)
    cross = np.einsum("mpd,npd->nmp", stack_parts(x), stack_parts(qs))  # (n, N, 5)
    d = np.maximum(part_sq_norms(qs)[:, None, :] + x_sq[None, :, :] - 2.0 * cross, 0.0)
    return d[0] if q.ndim == 1 else d


PRESENCE_EPS = 1e-6  # keeps log ||v_j|| finite for a silent (all-zero) subspace


def presence_logits(embedding: ArrayT, norm_bias: ArrayT | Sequence[float]) -> ArrayT:
    """The paper's eq. 5 before the sigmoid: log(||v_j|| + eps) + b_j, (..., 640) -> (..., 5).

    The one rule of presence: the norm loss trains ``b`` through it (torch, differentiable),
    and the app and the evaluation read presence through it (numpy, float64). A part is
    present when its logit is positive.
    """
    norms = part_norms(embedding)
    if _is_tensor(norms):
        return (norms + PRESENCE_EPS).log() + norm_bias
    bias = np.asarray(norm_bias, np.float64).reshape(N_PARTS)
    return np.log(norms.astype(np.float64) + PRESENCE_EPS) + bias


def _presence64(vectors: np.ndarray, norm_bias: Sequence[float] | None) -> np.ndarray:
    if norm_bias is not None:
        return 1.0 / (1.0 + np.exp(-presence_logits(np.asarray(vectors, np.float32), norm_bias)))
    norms = part_norms(np.asarray(vectors, np.float32)).astype(np.float64)
    return norms / np.maximum(norms.max(axis=-1, keepdims=True), 1e-12)


def presence(vectors: np.ndarray, norm_bias: Sequence[float] | None = None) -> np.ndarray:
    """(..., 640) track or segment vectors -> (..., 5) float32 presence of each part in [0, 1].

    With the trained norm-loss biases b (a weights card's ``norm_bias``), presence_j =
    sigmoid(:func:`presence_logits`), the paper's eq. 5. Without them, each part's norm relative
    to the largest part norm of that vector: 1 for the strongest part, near 0 for a part whose
    subspace the model pushed to zero.
    """
    return np.clip(_presence64(vectors, norm_bias), 0.0, 1.0).astype(np.float32)


def is_present(vectors: np.ndarray, norm_bias: Sequence[float] | None = None) -> np.ndarray:
    """(..., 640) -> (..., 5) bool: :func:`presence` of at least one half (with the biases:
    a positive :func:`presence_logits`; without: a norm at least half the row's largest)."""
    if norm_bias is not None:
        return presence_logits(np.asarray(vectors, np.float32), norm_bias) > 0.0
    return _presence64(vectors, None) >= 0.5


def track_presence(segments: np.ndarray, norm_bias: Sequence[float] | None) -> np.ndarray:
    """(N, 640) window vectors -> (5,) float32: each part's presence averaged over the windows.

    Read window by window, not from the track vector: the mean of windows that point different
    ways is shorter than any of them, so a part that plays throughout would read as faint, and
    a part that plays in half the windows reads as about half present.
    """
    segs = np.asarray(segments, np.float32).reshape(-1, EMBED_DIM)
    if not len(segs):
        raise ValueError("no windows: presence needs at least one")
    return presence(segs, norm_bias).mean(axis=0).astype(np.float32)
