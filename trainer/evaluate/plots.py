"""Report figures (matplotlib, drawn off screen with the Agg canvas).

- ``maps.png``: each subspace of the mix embeddings in 2-D (PCA), coloured by track (Fig. 8).
- ``pseudo_maps.png``: each part's pseudo pieces in its subspace, coloured by label (Fig. 9).
- ``stem_norms.png``: |embedding| of clean-stem inputs, one block per instrument (Fig. 11).
- ``distances.png``: per part, the distance matrices of stem input and of mix input (Fig. 12).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from model.parts import N_PARTS, PARTS, SUBSPACE_DIM, part_slice
from trainer.evaluate.metrics import distances, square
from trainer.evaluate.segments import SegmentSet

if TYPE_CHECKING:
    from trainer.evaluate.report import Evaluation

log = logging.getLogger(__name__)


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def pca_2d(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, 2) principal components (deterministic; sign fixed by the largest loading)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return np.zeros((len(x), 2))
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:2]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    pc = x @ (vt * signs[:, None]).T
    return np.pad(pc, ((0, 0), (0, 2 - pc.shape[1])))


def _first_labels(labels: np.ndarray, n: int) -> np.ndarray:
    return np.unique(labels)[:n]


def subspace_maps(segs: SegmentSet, fn: str, path: Path, names: Sequence[str],
                  max_tracks: int = 12, title: str = "mix input") -> None:
    """One scatter per subspace of ``(fn, "mix")`` embeddings, a colour per label track."""
    keep = _first_labels(segs.label, max_tracks)
    fig = Figure(figsize=(4 * N_PARTS, 4.4))
    axes = fig.subplots(1, N_PARTS)
    colours = {lab: _tab20(i) for i, lab in enumerate(keep)}
    for c, (ax, p) in enumerate(zip(axes, PARTS, strict=True)):
        rows = np.flatnonzero(np.isin(segs.label, keep) & segs.active[c])
        ax.set_title(f"{p} subspace")
        ax.set_xticks([])
        ax.set_yticks([])
        if len(rows) < 2:
            ax.text(0.5, 0.5, "too few audible segments", ha="center", transform=ax.transAxes)
            continue
        xy = pca_2d(segs.emb[(fn, "mix")][rows][:, part_slice(p)])
        for lab in keep:
            m = segs.label[rows] == lab
            if m.any():
                ax.scatter(xy[m, 0], xy[m, 1], s=14, color=colours[lab],
                           label=names[lab] if lab < len(names) else str(lab))
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(handles)), fontsize=7)
    fig.suptitle(f"Subspaces, PCA, {segs.seconds:g} s segments, {title}; colour = track")
    fig.subplots_adjust(bottom=0.2)
    _save(fig, path)


def _tab20(i: int) -> tuple[float, ...]:
    from matplotlib import colormaps

    return colormaps["tab20"](i % 20)


def pseudo_maps(sets: dict[str, SegmentSet], fn: str, path: Path, names: Sequence[str]) -> None:
    """Each part's pseudo pieces in that part's subspace, coloured by the part's label track."""
    fig = Figure(figsize=(4 * N_PARTS, 4.4))
    axes = fig.subplots(1, N_PARTS)
    for c, (ax, p) in enumerate(zip(axes, PARTS, strict=True)):
        ax.set_title(f"{p}: pseudo pieces")
        ax.set_xticks([])
        ax.set_yticks([])
        segs = sets.get(p)
        if segs is None or (fn, "mix") not in segs.emb or len(segs) < 2:
            continue
        rows = np.flatnonzero(segs.active[c])
        if len(rows) < 2:
            continue
        xy = pca_2d(segs.emb[(fn, "mix")][rows][:, part_slice(p)])
        for i, lab in enumerate(np.unique(segs.label[rows])):
            m = segs.label[rows] == lab
            ax.scatter(xy[m, 0], xy[m, 1], s=12, color=_tab20(i))
    fig.suptitle("Pseudo pieces in their part's subspace (PCA); colour = that part's label")
    _save(fig, path)


def stem_norms(segs: SegmentSet, fn: str, path: Path, per_part: int = 40, seed: int = 0) -> None:
    """|f(x_c)| for up to ``per_part`` audible clean-stem segments of each part, stacked."""
    rng = np.random.default_rng(seed)
    blocks, ticks = [], []
    for c, p in enumerate(PARTS):
        rows = np.flatnonzero(segs.active[c])
        if len(rows) > per_part:
            rows = np.sort(rng.choice(rows, per_part, replace=False))
        if len(rows):
            blocks.append(np.abs(segs.emb[(fn, p)][rows]))
            ticks.append((sum(len(b) for b in blocks) - len(rows) / 2, p))
    fig = Figure(figsize=(10, 6))
    ax = fig.subplots()
    if blocks:
        img = np.concatenate(blocks)
        im = ax.imshow(img, aspect="auto", interpolation="nearest", cmap="magma")
        fig.colorbar(im, ax=ax, label="|value|")
        edge = 0
        for b in blocks[:-1]:
            edge += len(b)
            ax.axhline(edge - 0.5, color="white", lw=0.8)
        ax.set_yticks([t for t, _ in ticks], [f"{p} in" for _, p in ticks])
    for c in range(1, N_PARTS):
        ax.axvline(c * SUBSPACE_DIM - 0.5, color="cyan", lw=0.6)
    ax.set_xticks([(c + 0.5) * SUBSPACE_DIM for c in range(N_PARTS)], list(PARTS))
    ax.set_xlabel("embedding dimension (subspace)")
    ax.set_title("Clean stem input: |embedding| per segment (rows grouped by the stem's part)")
    _save(fig, path)


def distance_pairs(segs: SegmentSet, fn: str, path: Path, n_tracks: int = 10) -> None:
    """Per part: distance matrix of subspace c for the clean stem input (top) and for the mix
    input (bottom), over the audible segments of the first ``n_tracks`` tracks, in track order."""
    keep = _first_labels(segs.label, n_tracks)
    fig = Figure(figsize=(4 * N_PARTS, 8))
    axes = fig.subplots(2, N_PARTS)
    for c, p in enumerate(PARTS):
        rows = np.flatnonzero(np.isin(segs.label, keep) & segs.active[c])
        for r, (src, what) in enumerate(((p, "stem input"), ("mix", "mix input"))):
            ax = axes[r, c]
            ax.set_title(f"{p} subspace, {what}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if len(rows) < 2:
                continue
            d = square(distances(segs.emb[(fn, src)][rows][:, part_slice(p)]))
            ax.imshow(d, cmap="viridis", interpolation="nearest")
    fig.suptitle(f"Distances between {segs.seconds:g} s segments of {len(keep)} tracks "
                 "(ordered by track)")
    _save(fig, path)


def write_plots(out: Path, ev: Evaluation, names: Sequence[str], seconds: float,
                seed: int = 0) -> list[str]:
    """Draw every figure into ``out``; returns the file names written."""
    segs = ev.pieces[seconds]
    written = []
    jobs = [
        ("maps.png", lambda f: subspace_maps(segs, "csn", f, names)),
        ("pseudo_maps.png", lambda f: pseudo_maps(ev.pseudo, "csn", f, names)),
        ("stem_norms.png", lambda f: stem_norms(segs, "csn", f, seed=seed)),
        ("distances.png", lambda f: distance_pairs(segs, "csn", f)),
    ]
    for name, draw in jobs:
        draw(out / name)
        written.append(name)
    log.info("plots: %s", ", ".join(written))
    return written
