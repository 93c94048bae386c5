"""Focus: one weight per part in [-1, 1], and the exact focused distance.

The focused distance between query q and track x (both (640,)) is

    D_w(q, x) = sum_c w_c * ||q_c - x_c||^2        (c over the five parts)

Positive w_c asks for *similar* part c, negative w_c for *different* part c (it rewards
distance), zero ignores the part. Lower D is a better match, so "same drums, different
everything else" is ``drums=1, bass=piano=guitar=others=-0.3``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from model.parts import (
    EMBED_DIM,
    N_PARTS,
    PARTS,
    SUBSPACE_DIM,
    part_index,
    part_sq_distances,
    part_sq_norms,
)


def parse_focus(focus: Mapping[str, float] | Sequence[float] | np.ndarray | str) -> np.ndarray:
    """A focus as a (5,) float32 array in :data:`model.parts.PARTS` order.

    Accepts ``{"drums": 1, "bass": 0.5}`` (missing parts are 0), five numbers, or the command
    line form ``"drums=1,bass=0.5"``. Weights must be finite, in [-1, 1], and not all zero.
    """
    if isinstance(focus, str):
        focus = _parse_focus_text(focus)
    if isinstance(focus, Mapping):
        w = np.zeros(N_PARTS, dtype=np.float32)
        for name, value in focus.items():
            w[part_index(str(name).strip().lower())] = float(value)
    else:
        w = np.asarray(focus, dtype=np.float32).reshape(-1)
        if w.shape != (N_PARTS,):
            raise ValueError(f"focus needs {N_PARTS} weights ({', '.join(PARTS)}), got {w.shape[0]}")
    if not np.isfinite(w).all():
        raise ValueError(f"focus weights must be finite numbers, got {w.tolist()}")
    if (np.abs(w) > 1.0 + 1e-6).any():
        raise ValueError(f"focus weights must lie in [-1, 1], got {dict(zip(PARTS, w.tolist(), strict=True))}")
    if not w.any():
        raise ValueError("focus is all zero: give at least one part a non-zero weight")
    return np.clip(w, -1.0, 1.0).astype(np.float32)


def _parse_focus_text(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            name, _, value = item.partition("=")
        else:  # a bare part name means weight 1
            name, value = item, "1"
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"focus {text!r}: {value!r} is not a number (use part=weight)") from None
        if not math.isfinite(v):
            raise ValueError(f"focus {text!r}: weight of {name.strip()} is not finite")
        out[name.strip().lower()] = v
    if not out:
        raise ValueError(f"focus {text!r} names no part; use e.g. drums=1,bass=0.5")
    return out


def format_focus(w: np.ndarray) -> str:
    return ",".join(f"{p}={float(v):g}" for p, v in zip(PARTS, w, strict=True) if v)


def focused_scores(q: np.ndarray, w: np.ndarray, x: np.ndarray,
                   x_sq: np.ndarray | None = None) -> np.ndarray:
    """D_w(q, x_i) for every row of x (N, 640) -> (N,), with one mat-vec.

    Expands ||q_c - x_c||^2 = ||q_c||^2 + ||x_c||^2 - 2 q_c.x_c; pass ``x_sq`` (N, 5), the
    rows' part squared norms, to avoid recomputing them. Tiny negative round-off is harmless.
    """
    assert q.shape == (EMBED_DIM,) and w.shape == (N_PARTS,) and x.shape[1] == EMBED_DIM
    if x_sq is None:
        x_sq = part_sq_norms(x)
    q_sq = (q.reshape(N_PARTS, SUBSPACE_DIM) ** 2).sum(axis=1)
    wq = (q.reshape(N_PARTS, SUBSPACE_DIM) * w[:, None]).reshape(EMBED_DIM)
    return float(w @ q_sq) + x_sq @ w - 2.0 * (x @ wq)


def best_segment_pair(qs: np.ndarray, xs: np.ndarray, w: np.ndarray) -> tuple[int, int]:
    """Indices (i, j) of the query segment i and track segment j closest under focus w.

    qs: (n, 640), xs: (m, 640) segment embeddings.
    """
    score = part_sq_distances(qs, xs) @ w  # (n, m)
    i, j = np.unravel_index(int(np.argmin(score)), score.shape)
    return int(i), int(j)
