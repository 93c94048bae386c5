"""The five instrument parts and their subspaces of the 640-d embedding.

The order is fixed by the method: ``drums [0:128) | bass [128:256) | piano [256:384) |
guitar [384:512) | others [512:640)``. Everything else in Partwise imports it from here.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

PARTS: tuple[str, ...] = ("drums", "bass", "piano", "guitar", "others")
N_PARTS = len(PARTS)
SUBSPACE_DIM = 128
EMBED_DIM = N_PARTS * SUBSPACE_DIM

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


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


def masks(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All five masks m_c (eq. 4) as a (5, 640) tensor: row c is 1 on subspace c, 0 elsewhere."""
    eye = torch.eye(N_PARTS, device=device, dtype=dtype)
    return eye.repeat_interleave(SUBSPACE_DIM, dim=1)


def mask(part: str | int, device: torch.device | str | None = None) -> torch.Tensor:
    """The (640,) mask m_c for one part."""
    i = part if isinstance(part, int) else part_index(part)
    return masks(device)[i]


def part_norms(embedding: ArrayT) -> ArrayT:
    """L2 norm of each subspace: (..., 640) -> (..., 5). Small norm = part absent (Table 3)."""
    stacked = stack_parts(embedding)
    if isinstance(stacked, torch.Tensor):
        return stacked.norm(dim=-1)
    return np.linalg.norm(stacked, axis=-1)
