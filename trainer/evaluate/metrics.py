"""The scores behind the tables: kNN accuracy, largest-norm identification, matrix correlation,
effective dimension (participation ratio) and the spread of a score over seeded draws or
over label tracks.

Pure numpy on embeddings that are already computed. Every random choice (breaking exact ties)
comes from a seeded generator, so the same inputs always give the same numbers. Accuracies are
percentages in [0, 100]; an empty evaluation gives NaN (shown as "-" in reports).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist

from model.parts import EMBED_DIM, N_PARTS, is_present, part_norms


def knn_predict(x: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None,
                k: int = 5, seed: int = 0, chunk: int = 512) -> np.ndarray:
    """Majority vote of the ``k`` nearest other rows (Euclidean), as in the paper's sec. 4.2.1.

    x: (N, D) vectors; labels: (N,) ints; groups: (N,) ints, every row of the target's own group
    is left out of its references (``None``: only the target itself, i.e. ``groups = arange(N)``).
    A vote tie goes to the label of the nearest tied neighbour; exact distance ties are broken in
    a seeded random order, so a constant embedding scores chance, not the first track.
    Returns (N,) predicted labels; -1 where a target has no reference at all.
    """
    x = np.asarray(x, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(x)
    if x.ndim != 2 or labels.shape != (n,):
        raise ValueError(f"expected x (N, D) and labels (N,), got {x.shape} and {labels.shape}")
    groups = np.arange(n) if groups is None else np.asarray(groups, dtype=np.int64)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {groups.shape}")
    pred = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return pred
    perm = np.random.default_rng(seed).permutation(n)  # column order = tie-break order
    ref, ref_labels, ref_groups = x[perm], labels[perm], groups[perm]
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    kk = min(k, n)
    for s in range(0, n, chunk):
        q = x[s:s + chunk]
        d = np.einsum("ij,ij->i", q, q)[:, None] + ref_sq[None, :] - 2.0 * (q @ ref.T)
        np.maximum(d, 0.0, out=d)
        d[groups[s:s + chunk, None] == ref_groups[None, :]] = np.inf
        idx = np.argpartition(d, kk - 1, axis=1)[:, :kk]
        dist = np.take_along_axis(d, idx, axis=1)
        order = np.lexsort((idx, dist), axis=-1)  # by distance, then tie-break order
        idx = np.take_along_axis(idx, order, axis=1)
        dist = np.take_along_axis(dist, order, axis=1)
        votes = ref_labels[idx]
        # an excluded (infinite) neighbour votes for a label of its own that can never win
        votes = np.where(np.isinf(dist), -1 - np.arange(kk)[None, :], votes)
        counts = (votes[:, :, None] == votes[:, None, :]).sum(axis=2)
        best = counts.argmax(axis=1)  # first maximum = nearest among the tied labels
        chosen = votes[np.arange(len(q)), best]
        pred[s:s + chunk] = np.where(chosen < 0, -1, chosen)
    return pred


def knn_accuracy(x: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None,
                 k: int = 5, seed: int = 0) -> float:
    """Percentage of rows whose :func:`knn_predict` label is right; NaN for no rows."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    pred = knn_predict(x, labels, groups, k=k, seed=seed)
    return float(100.0 * np.mean(pred == labels))


def largest_norm_predict(embedding: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 640) embeddings -> (N,) index of the subspace with the largest norm (sec. 4.2.3).

    Exact ties (e.g. an all-zero output) are broken at random with a seeded generator.
    """
    norms = np.asarray(part_norms(np.asarray(embedding, dtype=np.float32)))
    if norms.ndim != 2 or norms.shape[1] != N_PARTS:
        raise ValueError(f"expected (N, 640) embeddings, got {np.shape(embedding)}")
    is_max = norms >= norms.max(axis=1, keepdims=True)
    draw = np.random.default_rng(seed).random(norms.shape)
    return np.where(is_max, draw, -1.0).argmax(axis=1)


def presence_predict(embedding: np.ndarray, norm_bias: list[float] | np.ndarray | None = None
                     ) -> np.ndarray:
    """(N, 640) embeddings -> (N, 5) bool: is each part present? (:func:`model.parts.is_present`:
    with the trained norm-loss biases, the norm loss's own rule; without, a norm at least half
    the largest of its row.)"""
    emb = np.asarray(embedding, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] != EMBED_DIM:
        raise ValueError(f"expected (N, 640) embeddings, got {np.shape(embedding)}")
    return is_present(emb, norm_bias)


def distances(x: np.ndarray) -> np.ndarray:
    """Condensed Euclidean distance matrix: (N, D) -> (N * (N - 1) / 2,) float64, pairs i < j."""
    return pdist(np.asarray(x, dtype=np.float64))


def square(condensed: np.ndarray) -> np.ndarray:
    """Condensed distances -> the full (N, N) symmetric matrix (for plots)."""
    from scipy.spatial.distance import squareform

    return squareform(condensed)


def matrix_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two distance matrices over the same rows (sec. 4.2.4).

    a, b: (N, Da), (N, Db) vectors of the same N segments; each gives its pairwise distance
    matrix, whose upper triangles are correlated. NaN when fewer than 3 rows or a matrix is
    constant (e.g. every vector identical).
    """
    if len(a) != len(b):
        raise ValueError(f"need the same segments on both sides, got {len(a)} and {len(b)} rows")
    if len(a) < 3:
        return float("nan")
    da, db = distances(a), distances(b)
    if np.ptp(da) == 0 or np.ptp(db) == 0:
        return float("nan")
    return float(np.corrcoef(da, db)[0, 1])


def participation_ratio(x: np.ndarray) -> float:
    """Effective dimension of a cloud of vectors: (sum lambda)^2 / sum lambda^2 over the
    eigenvalues lambda of its covariance matrix.

    x: (N, D). 1 when every vector lies on one line (a collapsed subspace that carries one
    number, e.g. loudness), D when the variance is spread evenly over D orthogonal directions.
    NaN for fewer than 2 rows or no variance at all (nothing to measure).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (N, D) vectors, got shape {x.shape}")
    if len(x) < 2 or not np.isfinite(x).all():
        return float("nan")
    # the covariance's eigenvalues are the squared singular values of the centred rows / (N - 1)
    s2 = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2
    total = s2.sum()
    if total <= 1e-24 * max(1.0, float(np.abs(x).max()) ** 2):
        return float("nan")
    return float(total ** 2 / np.sum(s2 ** 2))


def spread(values: list[float] | np.ndarray) -> dict[str, float]:
    """Mean, standard deviation (population, ddof 0), min and max of the finite ``values`` and
    how many there were: the summary of one score over seeded draws. NaN fields when none."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if not len(v):
        nan = float("nan")
        return {"mean": nan, "std": nan, "min": nan, "max": nan, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max()), "n": int(len(v))}


def label_spread(hits: Mapping[Any, Sequence[int]]) -> dict[str, float]:
    """Table 2 from every pair of a split, with its error: ``hits`` maps each label track to
    [right, scored] segments. ``mean``: accuracy % over all segments; ``std``: its standard
    error with the segments clustered by label track (a label's segments are not independent);
    ``min``/``max``: the per-label accuracies; ``n``: labels. NaN fields when nothing scored."""
    h = np.asarray([v for v in hits.values() if v[1] > 0], dtype=np.float64).reshape(-1, 2)
    nan = float("nan")
    if not len(h):
        return {"mean": nan, "std": nan, "min": nan, "max": nan, "n": 0}
    right, n = h[:, 0], h[:, 1]
    acc = right.sum() / n.sum()
    L = len(h)
    se = math.sqrt(L / (L - 1) * np.sum((right - acc * n) ** 2)) / n.sum() if L > 1 else nan
    per = right / n
    return {"mean": float(100 * acc), "std": float(100 * se), "min": float(100 * per.min()),
            "max": float(100 * per.max()), "n": L}
