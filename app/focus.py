"""Focus and the meaning of a result: one weight per part in [-1, 1], per-part similarity, the
match score and the part a result is similar "because of". The engine computes these; the CLI,
the export and the window only show them.

Per part c, the similarity of query q and track x (both (640,)) is

    s_c = exp(-||q_c - x_c||^2 / scale_c)          in [0, 1]

with scale_c the library's typical (median) squared distance between two tracks in that part:
1 for an identical part, 0.37 at the typical distance, towards 0 further away. The focus then
weighs the parts; positive w_c asks for a *similar* part c, negative w_c for a *different* one,
zero ignores it:

    match = (sum_c w_c s_c + N) / (P + N)          in [0, 1]

where P is the sum of the positive weights and N that of the negative weights' sizes. 1 means
the same in every "same" part and nothing alike in every "different" part, 0 the opposite;
higher is better. Because each s_c is bounded, being far apart in a "different" part earns at
most its weight |w_c|: no distance in a negatively weighted part can buy more than that, so it
never drowns the parts asked to be the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from model.parts import EMBED_DIM, N_PARTS, PARTS, part_index, part_sq_distances, part_sq_norms

ABSENT = 0.3  # presence under this counts as "the part is (nearly) absent"


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


def part_scales(vectors: np.ndarray, pairs: int = 2000, seed: int = 0) -> np.ndarray:
    """(N, 640) -> (5,) float32: median squared distance per part between random pairs of
    tracks (ones for fewer than two tracks or a part with no spread)."""
    n = len(vectors)
    if n < 2:
        return np.ones(N_PARTS, np.float32)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, pairs)
    j = (i + rng.integers(1, n, pairs)) % n
    scales = np.median(part_sq_norms(vectors[i] - vectors[j]), axis=0)
    return np.where(scales > 1e-9, scales, 1.0).astype(np.float32)


def similarity(part_sq_dists: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """(..., 5) squared part distances -> (..., 5) similarity s_c in [0, 1]."""
    return np.exp(-np.maximum(part_sq_dists, 0.0) / np.maximum(scales, 1e-9)).astype(np.float32)


def match(sim: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(..., 5) similarities -> (...,) match in [0, 1] under focus w (see the module docstring)."""
    return match_from_raw(sim @ w, w)


def match_from_raw(raw: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_c w_c s_c -> match in [0, 1]: shifted and scaled, so the order is the same."""
    pos, neg = float(w[w > 0].sum()), float(-w[w < 0].sum())
    return ((raw + neg) / (pos + neg)).astype(np.float32)


def focused_scores(q: np.ndarray, w: np.ndarray, x: np.ndarray, scales: np.ndarray,
                   x_sq: np.ndarray | None = None) -> np.ndarray:
    """Match of q (640,) with every row of x (N, 640) under focus w -> (N,); pass ``x_sq``
    (N, 5), the rows' part squared norms, to avoid recomputing them."""
    assert q.shape == (EMBED_DIM,) and w.shape == (N_PARTS,) and x.shape[1] == EMBED_DIM
    return match(similarity(part_sq_distances(q, x, x_sq), scales), w)


def best_segment_pair(qs: np.ndarray, xs: np.ndarray, w: np.ndarray,
                      scales: np.ndarray) -> tuple[int, int]:
    """Indices (i, j) of the query segment i and track segment j that match best under focus w.

    qs: (n, 640), xs: (m, 640) segment embeddings.
    """
    return best_segment_pairs(qs, [xs], w, scales)[0]


def best_segment_pairs(qs: np.ndarray, xss: Sequence[np.ndarray], w: np.ndarray,
                       scales: np.ndarray) -> list[tuple[int, int]]:
    """:func:`best_segment_pair` for several tracks at once (one distance computation over all
    their windows): ``xss`` holds each track's (m_t, 640) windows."""
    if not len(xss):
        return []
    sizes = [len(x) for x in xss]
    score = match(similarity(part_sq_distances(qs, np.concatenate(xss)), scales), w)  # (n, sum m_t)
    out, a = [], 0
    for m in sizes:
        i, j = np.unravel_index(int(np.argmax(score[:, a:a + m])), (score.shape[0], m))
        out.append((int(i), int(j)))
        a += m
    return out


def because(sim: np.ndarray, w: np.ndarray, q_presence: np.ndarray | None,
            r_presence: np.ndarray) -> int:
    """The part that makes a result similar: the most similar of the parts the focus weighs up
    (all parts when none is, or when every one it weighs up is absent from both tracks),
    weighed by how present the part is in the less full of the two tracks.

    Never a part absent (presence under :data:`ABSENT`) from both tracks: two silences are
    alike, which is no reason. Only when every part is absent from both, the most present one.
    """
    q = np.asarray(q_presence if q_presence is not None else np.ones(N_PARTS), np.float64)
    r = np.asarray(r_presence, np.float64)
    heard = np.maximum(q, r) >= ABSENT  # present in at least one of the two tracks
    if not heard.any():
        return int(np.argmax(np.maximum(q, r)))
    score = sim * np.clip(np.minimum(q, r) / ABSENT, 0.0, 1.0)
    allowed = heard & (w > 0)
    if not allowed.any():
        allowed = heard
    return int(np.argmax(np.where(allowed, score, -1.0)))


def absent_parts(w: np.ndarray, presence: np.ndarray) -> list[str]:
    """The parts the focus asks to be the same that the track (nearly) lacks."""
    return [PARTS[c] for c in range(N_PARTS) if w[c] > 0 and presence[c] < ABSENT]
