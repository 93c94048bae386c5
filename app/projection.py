"""2-D maps of the library: UMAP of one part's subspace (or of the whole embedding), cached.

Six maps exist per library state, one per space in :data:`SPACES`: the whole 640-d embedding
and each 128-d part. :func:`space_for_focus` picks the one that fits a focus (a solo fader shows
that part's map). :func:`project` is a generator of ever better maps so the window has something
to show at once on a large library:

1. ``pca``: a linear projection, instant at any size;
2. ``sample``: UMAP fitted on a random sample, the rest placed with ``transform`` (large
   libraries only);
3. ``full``: UMAP fitted on every track (up to ``full_limit`` tracks).

The last map is cached on disk under a hash of the track ids, the vectors and the settings, so a
reopened library shows its map without recomputing. :func:`library_map` serves a library's maps
from its own vectors: the window asks for a space and draws the positions it gets. Headless: no
Qt; call it from a worker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from model.parts import EMBED_DIM, PARTS, part_slice

log = logging.getLogger(__name__)

WHOLE = "all"
SPACES: tuple[str, ...] = (WHOLE, *PARTS)
MIN_UMAP = 16  # below this many tracks a map is PCA only: UMAP needs neighbours to work with
CACHE_VERSION = 1


@dataclass(frozen=True)
class Projection:
    """ids: (N,) int64 track ids; xy: (N, 2) float32 map positions, rows in ``ids`` order."""

    space: str
    ids: np.ndarray
    xy: np.ndarray
    stage: str  # "pca" | "sample" | "full"
    final: bool


def focus_array(focus: Mapping[str, float] | Sequence[float]) -> np.ndarray:
    """Focus weights as a (5,) float array in :data:`PARTS` order."""
    if isinstance(focus, Mapping):
        return np.array([float(focus.get(p, 0.0)) for p in PARTS])
    w = np.asarray(focus, dtype=float)
    if w.shape != (len(PARTS),):
        raise ValueError(f"focus needs {len(PARTS)} weights, got shape {w.shape}")
    return w


def space_for_focus(focus: Mapping[str, float] | Sequence[float]) -> str:
    """The map that fits a focus: a part when it is the only one weighted up, else the whole."""
    w = focus_array(focus)
    positive = np.flatnonzero(w > 0)
    return PARTS[int(positive[0])] if len(positive) == 1 else WHOLE


def space_vectors(vectors: np.ndarray, space: str) -> np.ndarray:
    """(N, 640) -> the (N, d) columns of ``space``: all 640, or one part's 128."""
    if vectors.ndim != 2 or vectors.shape[1] != EMBED_DIM:
        raise ValueError(f"expected (N, {EMBED_DIM}) vectors, got {vectors.shape}")
    if space == WHOLE:
        return vectors
    if space not in PARTS:
        raise ValueError(f"unknown map space {space!r}; expected one of {', '.join(SPACES)}")
    return vectors[:, part_slice(space)]


def pca_2d(x: np.ndarray, sample: int = 5000, seed: int = 0) -> np.ndarray:
    """(N, d) -> (N, 2): the top two principal axes, fitted on at most ``sample`` rows."""
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), np.float32)
    rng = np.random.default_rng(seed)
    fit = x[rng.choice(n, sample, replace=False)] if n > sample else x
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    axes = vt[:2].T if vt.shape[0] >= 2 else np.pad(vt.T, ((0, 0), (0, 2 - vt.shape[0])))
    return ((x - mean) @ axes).astype(np.float32)


def _umap(n: int, seed: int):
    import umap  # slow import (numba); only in workers

    return umap.UMAP(n_neighbors=min(15, n - 1), min_dist=0.1, metric="euclidean",
                     init="pca" if n < 4096 else "spectral", transform_seed=seed,
                     low_memory=True, verbose=False)


def umap_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, d) -> (N, 2), UMAP fitted on all rows."""
    return _umap(len(x), seed).fit_transform(x).astype(np.float32)


def umap_sample_2d(x: np.ndarray, sample: int, seed: int = 0) -> np.ndarray:
    """(N, d) -> (N, 2): UMAP fitted on ``sample`` random rows, the others transformed."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x), sample, replace=False)
    rest = np.setdiff1d(np.arange(len(x)), idx)
    reducer = _umap(sample, seed)
    xy = np.empty((len(x), 2), np.float32)
    xy[idx] = reducer.fit_transform(x[idx])
    if len(rest):
        xy[rest] = reducer.transform(x[rest])
    return xy


def cache_key(ids: np.ndarray, vectors: np.ndarray, space: str, full_limit: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"v{CACHE_VERSION}:{space}:{full_limit}:{vectors.shape}".encode())
    h.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return h.hexdigest()


class MapCache:
    """Final maps as ``<dir>/<key>.npy`` files, written atomically; keeps the newest ``keep``."""

    def __init__(self, directory: str | os.PathLike, keep: int = 24):
        self.dir = Path(directory)
        self.keep = keep

    def get(self, key: str, n: int) -> np.ndarray | None:
        path = self.dir / f"{key}.npy"
        try:
            xy = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if xy.shape != (n, 2):
            log.warning("%s: cached map has shape %s, expected %s; ignoring it", path, xy.shape, (n, 2))
            return None
        return xy.astype(np.float32)

    def put(self, key: str, xy: np.ndarray) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, xy.astype(np.float32), allow_pickle=False)
            os.replace(tmp, self.dir / f"{key}.npy")
            self._prune()
        except OSError as e:  # a map we cannot cache is recomputed next time, nothing worse
            log.warning("%s: cannot cache the map (%s)", self.dir, e)

    def _prune(self) -> None:
        files = sorted(self.dir.glob("*.npy"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[self.keep:]:
            old.unlink(missing_ok=True)


def project(ids: np.ndarray, vectors: np.ndarray, space: str, cache: MapCache | None = None,
            sample: int = 3000, full_limit: int = 30000, seed: int = 0,
            cancel: threading.Event | None = None, method: str = "umap") -> Iterator[Projection]:
    """Yield maps of ``space`` for (N,) ``ids`` with (N, 640) ``vectors``, quick ones first.

    The last one yielded has ``final=True``. ``method="pca"`` skips UMAP (used by tests and
    benchmarks that must not wait for it). Stops early, without caching, when ``cancel`` is set.
    """
    ids = np.asarray(ids, dtype=np.int64)
    x = space_vectors(np.asarray(vectors, dtype=np.float32), space)
    n = len(ids)
    if len(x) != n:
        raise ValueError(f"{n} ids but {len(x)} vectors")
    key = cache_key(ids, x, space, full_limit) + ("" if method == "umap" else f"-{method}")
    if n < MIN_UMAP and method == "umap":
        cache = None  # an instant linear map: never cached, so never shown as a cached "UMAP"
    if cache is not None and (hit := cache.get(key, n)) is not None:
        yield Projection(space, ids, hit, "cached", True)
        return
    quick_only = method == "pca" or n < MIN_UMAP
    xy = pca_2d(x, seed=seed)
    yield Projection(space, ids, xy, "pca", quick_only)
    stages: list[tuple[str, bool]] = []
    if not quick_only:
        if n > sample * 1.5:
            stages.append(("sample", n > full_limit))
        if n <= full_limit:
            stages.append(("full", True))
    for stage, final in stages:
        if cancel is not None and cancel.is_set():
            return
        log.info("map of %s: UMAP (%s) on %d tracks", space, stage, n)
        xy = umap_sample_2d(x, sample, seed) if stage == "sample" else umap_2d(x, seed)
        if cancel is not None and cancel.is_set():
            return
        yield Projection(space, ids, xy, stage, final)
    if cache is not None:
        cache.put(key, xy)


class AnalysedTracks(Protocol):
    """What :func:`library_map` reads of the engine (:class:`app.library.Library`)."""

    root: Path

    def track_vectors(self) -> tuple[np.ndarray, np.ndarray]: ...


def library_map(library: AnalysedTracks, space: str, cancel: threading.Event | None = None,
                method: str = "umap", sample: int = 3000, full_limit: int = 30000,
                seed: int = 0) -> Iterator[Projection]:
    """The maps of ``space`` over the library's analysed tracks, quick ones first (see
    :func:`project`), cached in the library's ``maps`` folder. The vectors stay in the engine;
    what comes out is ids and 2-D positions."""
    ids, vectors = library.track_vectors()
    yield from project(ids, vectors, space, MapCache(Path(library.root) / "maps"), sample,
                       full_limit, seed, cancel, method)
