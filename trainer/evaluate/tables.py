"""The paper's Tables 1-5 over embedded segments, and the fast checks used during training.

A :class:`Method` says, for each part, which embedding function's output on which input (the mix
or that part's clean stem) forms the part's space, and which columns of it. The proposed CSN on
the mix uses the subspace columns of one 640-d output; the individual networks use one 128-d
network per part; the MFCC baseline uses one space for every part.

Protocol choices beyond the paper's text (they are written into every report's config):
- ``audible_only``: a part is scored only on segments where that part is audible (the loader's
  activity threshold), both as target and as reference; a silent stem has no identity to find.
- Table 4 compares the part's subspace on both sides, f(x_ij) m_j against f(x_i) m_j.
- Distance-matrix correlations use the upper triangle (each pair once, no diagonal), over at
  most ``max_segments`` seeded-random segments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from model.parts import PARTS, part_index, part_slice
from trainer.evaluate.metrics import (
    knn_accuracy,
    knn_predict,
    largest_norm_predict,
    matrix_correlation,
    participation_ratio,
    presence_predict,
)
from trainer.evaluate.segments import DrawPlan, Job, SegmentSet

ALL = slice(None)


@dataclass(frozen=True)
class Space:
    """One part's space: columns ``columns`` (None: all) of ``fn`` applied to ``source``
    ("mix" or "stem", the clean stem of that part)."""

    fn: str
    source: str = "mix"
    columns: slice | None = None

    def __post_init__(self) -> None:
        if self.source not in ("mix", "stem"):
            raise ValueError(f"source must be 'mix' or 'stem', got {self.source!r}")


@dataclass(frozen=True)
class Method:
    """A way to get a vector per part for each segment. ``standardize``: z-score each column
    over the evaluated segments first (for hand-made features of unequal scales, e.g. MFCCs)."""

    name: str
    spaces: Mapping[str, Space]
    standardize: bool = False

    def job(self, part: str) -> Job:
        sp = self.spaces[part]
        return (sp.fn, "mix" if sp.source == "mix" else part)

    def jobs(self, parts: tuple[str, ...] = PARTS) -> set[Job]:
        return {self.job(p) for p in parts if p in self.spaces}

    def vectors(self, segs: SegmentSet, part: str) -> np.ndarray:
        """(N, D) vectors of ``part``'s space for every segment of ``segs``."""
        cols = self.spaces[part].columns
        x = segs.emb[self.job(part)][:, ALL if cols is None else cols]
        if x.size and np.isnan(x).any():
            raise ValueError(f"{self.name}: {part} has segments that were not embedded (silent "
                             "stems are skipped when only audible segments are scored)")
        if self.standardize and len(x):
            x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-8)
        return np.asarray(x, dtype=np.float32)


def csn_method(name: str, fn: str, source: str = "mix") -> Method:
    """A 640-d conditional network: part c is subspace c of one output."""
    return Method(name, {p: Space(fn, source, part_slice(p)) for p in PARTS})


def per_part_method(name: str, fns: Mapping[str, str], source: str) -> Method:
    """One network per part (``fns[part]``), its whole output is that part's space."""
    return Method(name, {p: Space(fns[p], source) for p in PARTS if p in fns})


def shared_method(name: str, fn: str, standardize: bool = False) -> Method:
    """One space for all parts (a part-blind baseline), on the mix."""
    return Method(name, {p: Space(fn, "mix") for p in PARTS}, standardize=standardize)


def _rows(segs: SegmentSet, part: str, audible_only: bool) -> np.ndarray:
    if audible_only:
        return np.flatnonzero(segs.active[part_index(part)])
    return np.arange(len(segs))


def music_id(segs: SegmentSet, method: Method, *, k: int = 5, seed: int = 0,
             audible_only: bool = True) -> dict[str, float]:
    """Table 1 for one segment length: kNN track-ID accuracy (%) per part, only the target
    itself left out of the references."""
    out = {}
    for p in method.spaces:
        rows = _rows(segs, p, audible_only)
        x = method.vectors(segs.subset(rows), p)
        out[p] = knn_accuracy(x, segs.label[rows], None, k=k, seed=seed)
    return out


def pseudo_separation(sets: Mapping[str, SegmentSet], method: Method, *, k: int = 5,
                      seed: int = 0, audible_only: bool = True) -> dict[str, float]:
    """Table 2: kNN label accuracy (%) on each part's pseudo pieces, with every segment of the
    target's own pseudo piece left out (only pieces sharing that part, and differing elsewhere,
    can vote correctly)."""
    return {p: knn_accuracy(*_pseudo_rows(segs, p, method, audible_only), k=k, seed=seed)
            for p, segs in sets.items() if p in method.spaces}


def _pseudo_rows(segs: SegmentSet, part: str, method: Method, audible_only: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vectors, labels and pieces (groups) that Table 2 scores for ``part``."""
    rows = _rows(segs, part, audible_only)
    return method.vectors(segs.subset(rows), part), segs.label[rows], segs.group[rows]


def pseudo_separation_draws(sets: Mapping[str, SegmentSet], method: Method, plan: DrawPlan,
                            *, k: int = 5, seed: int = 0, audible_only: bool = True
                            ) -> dict[str, list[float]]:
    """Table 2 once per draw of ``plan``: ``{part: [accuracy % of draw 0, draw 1, ...]}``.

    ``sets`` holds the segments of every distinct pseudo piece of the plan (group = piece id);
    draw d scores only its own pieces, with kNN ties broken by ``seed + d``.
    """
    out: dict[str, list[float]] = {}
    for p, segs in sets.items():
        if p not in method.spaces:
            continue
        out[p] = []
        for d, chosen in enumerate(plan.draws):
            rows = np.flatnonzero(np.isin(segs.group, chosen.get(p, [])))
            sub = segs.subset(rows)
            out[p].append(pseudo_separation({p: sub}, method, k=k, seed=seed + d,
                                            audible_only=audible_only)[p])
    return out


def pseudo_separation_hits(sets: Mapping[str, SegmentSet], method: Method, *, k: int = 5,
                           seed: int = 0, audible_only: bool = True
                           ) -> dict[str, dict[int, list[int]]]:
    """Table 2 on every piece of ``sets``, counted per label track: ``{part: {label: [right,
    scored]}}``. The same votes as :func:`pseudo_separation` with the same ``seed``, so the
    counts sum to its accuracy; kept per label so that two models can be compared label by
    label when a split is too small for seeded draws."""
    out: dict[str, dict[int, list[int]]] = {}
    for p, segs in sets.items():
        if p not in method.spaces:
            continue
        x, labels, groups = _pseudo_rows(segs, p, method, audible_only)
        pred = knn_predict(x, labels, groups, k=k, seed=seed)
        out[p] = {int(lab): [int(np.sum(pred[labels == lab] == lab)), int(np.sum(labels == lab))]
                  for lab in np.unique(labels)}
    return out


def effective_dimension(segs: SegmentSet, method: Method, *, audible_only: bool = True
                        ) -> dict[str, float]:
    """Participation ratio of each part's space over the segments (with ``audible_only``, those
    where the part is audible). About 1 means the space has collapsed to one direction."""
    out = {}
    for p in method.spaces:
        rows = _rows(segs, p, audible_only)
        out[p] = participation_ratio(method.vectors(segs.subset(rows), p)) if len(rows) else float("nan")
    return out


def stem_presence(segs: SegmentSet, fn: str, norm_bias: list[float] | None = None
                  ) -> dict[str, dict[str, float]]:
    """Presence on clean stems: each audible clean stem of part c alone, embedded by ``fn``.

    Per part, in %: ``largest`` (c has the largest norm: Table 3), ``own`` (c is judged
    present), ``others_absent`` (the four other parts are judged absent) and ``accuracy`` (the
    five present/absent decisions against the truth: c present, the rest absent). Present means
    sigmoid(log ||f_j|| + b_j) > 0.5 with the trained norm-loss biases ``norm_bias`` (what the
    app shows), or a norm at least half the largest without them.
    """
    out: dict[str, dict[str, float]] = {}
    for c, p in enumerate(PARTS):
        rows = np.flatnonzero(segs.active[c])
        if not len(rows):
            out[p] = {k: float("nan") for k in ("largest", "own", "others_absent", "accuracy")}
            continue
        emb = segs.emb[(fn, p)][rows]
        pred = presence_predict(emb, norm_bias)
        truth = np.zeros_like(pred)
        truth[:, c] = True
        others = np.delete(pred, c, axis=1)
        out[p] = {"largest": float(100.0 * np.mean(largest_norm_predict(emb, seed=c) == c)),
                  "own": float(100.0 * pred[:, c].mean()),
                  "others_absent": float(100.0 * (~others).mean()),
                  "accuracy": float(100.0 * (pred == truth).mean())}
    return out


def mix_presence(segs: SegmentSet, fn: str, norm_bias: list[float] | None = None
                 ) -> dict[str, dict[str, float]]:
    """Presence on mixes: per part, the share (%) of segments whose present/absent decision
    (as in :func:`stem_presence`) matches the loader's activity (``accuracy``), of audible ones
    judged present (``recall``) and of silent ones judged present (``false_present``)."""
    pred = presence_predict(segs.emb[(fn, "mix")], norm_bias)
    out: dict[str, dict[str, float]] = {}
    for c, p in enumerate(PARTS):
        act = segs.active[c]

        def pct(x: np.ndarray) -> float:
            return float(100.0 * x.mean()) if len(x) else float("nan")

        out[p] = {"accuracy": pct(pred[:, c] == act), "recall": pct(pred[act, c]),
                  "false_present": pct(pred[~act, c])}
    return out


def stem_identification_table(segs: SegmentSet, fn: str, *, seed: int = 0
                              ) -> tuple[dict[str, float], dict[str, int]]:
    """Table 3: each audible clean stem alone -> the subspace with the largest norm (%).

    Needs the 640-d ``(fn, part)`` embeddings; returns (accuracy per part, segments per part).
    """
    acc, count = {}, {}
    for c, p, pred in _stem_predictions(segs, fn, seed):
        count[p] = int(len(pred))
        acc[p] = float(100.0 * np.mean(pred == c)) if len(pred) else float("nan")
    return acc, count


def _stem_predictions(segs: SegmentSet, fn: str, seed: int):
    """(part index, part, largest-norm subspace of each of its audible clean stems) per part,
    with Table 3's seeded tie-breaks; an empty array where the part is never audible."""
    for c, p in enumerate(PARTS):
        rows = np.flatnonzero(segs.active[c])
        pred = (largest_norm_predict(segs.emb[(fn, p)][rows], seed=seed + c) if len(rows)
                else np.zeros(0, dtype=np.int64))
        yield c, p, pred


def stem_identification_confusion(segs: SegmentSet, fn: str, *, seed: int = 0
                                  ) -> dict[str, dict[str, float]]:
    """Where Table 3's clean stems go: for each part with audible segments, the share (%) of
    its stems whose largest-norm subspace is each part (the diagonal is Table 3; the same
    seeded tie-breaks). A part's misses read as what it is taken for, e.g. low guitars as bass."""
    out = {}
    for _, p, pred in _stem_predictions(segs, fn, seed):
        if len(pred):
            counts = np.bincount(pred, minlength=len(PARTS))
            out[p] = {q: float(100.0 * counts[j] / len(pred)) for j, q in enumerate(PARTS)}
    return out


def _sample(rows: np.ndarray, max_segments: int | None, seed: int) -> np.ndarray:
    if max_segments is None or len(rows) <= max_segments:
        return rows
    pick = np.random.default_rng(seed).choice(len(rows), max_segments, replace=False)
    return np.sort(rows[pick])


def stem_mix_correlation(segs: SegmentSet, stem: Method, mix: Method, *, seed: int = 0,
                         audible_only: bool = True, max_segments: int | None = 2000
                         ) -> dict[str, float]:
    """Table 4: per part, Pearson correlation between the distance matrix of the clean-stem
    input (``stem`` method) and that of the mix input (``mix`` method) over the same segments."""
    out = {}
    for c, p in enumerate(PARTS):
        if p not in stem.spaces or p not in mix.spaces:
            continue
        rows = _sample(_rows(segs, p, audible_only), max_segments, seed + c)
        sub = segs.subset(rows)
        out[p] = matrix_correlation(stem.vectors(sub, p), mix.vectors(sub, p))
    return out


def cross_correlation(segs: SegmentSet, method: Method, *, seed: int = 0,
                      audible_only: bool = True, max_segments: int | None = 2000
                      ) -> dict[str, float]:
    """Table 5: correlation between the distance matrices of every pair of parts' spaces, over
    the same segments (with ``audible_only``, those where both parts are audible). Keys
    ``"drums/bass"`` etc. (pairs in part order)."""
    parts = [p for p in PARTS if p in method.spaces]
    out = {}
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            ok = np.ones(len(segs), dtype=bool)
            if audible_only:
                ok = segs.active[part_index(a)] & segs.active[part_index(b)]
            sub = segs.subset(_sample(np.flatnonzero(ok), max_segments, seed))
            out[f"{a}/{b}"] = matrix_correlation(method.vectors(sub, a), method.vectors(sub, b))
    return out


def mean(scores: Mapping[str, float | None]) -> float:
    """Mean over the finite values (None counts as missing); NaN when there are none."""
    vals = [v for v in scores.values() if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")
