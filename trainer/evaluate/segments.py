"""Cut test pieces into segments and embed them: the one pass over the audio behind every table.

A *piece* is either a dataset piece (its mix and its five class stems, as the loader gives them)
or a pseudo piece (sec. 3.4: the stem of one part from track A mixed with every other part from
track B). Pieces are cut into non-overlapping windows of ``seconds``; each window records its
label, the piece it came from, and which parts are audible in it. The requested embedding
functions run on batches of windows gathered across pieces, and each track is decoded once per
pass (all segment lengths are cut from the same decoded audio).

Inputs of an embedding job: ``"mix"`` (the piece's mix) or a part name (that part's clean stem).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from model.embedder import segment_starts
from model.parts import N_PARTS, PARTS, part_index

log = logging.getLogger(__name__)

EmbedFn = Callable[[np.ndarray], np.ndarray]
"""(B, samples) float32 clips at the dataset rate -> (B, D) float32 embeddings."""

ActivityFn = Callable[..., np.ndarray]
"""``activity(parts (5, n), sr, window, hop=None) -> (5, n_windows) bool`` (the loader's)."""

Job = tuple[str, str]
"""(embedding function name, input): input is ``"mix"`` or a part name (its clean stem)."""

INPUTS: tuple[str, ...] = ("mix", *PARTS)


class Dataset(Protocol):
    """What evaluation needs from a dataset (the Slakh-layout loader provides it)."""

    tracks: Sequence[Any]

    def __len__(self) -> int: ...

    def load_parts(self, i: int) -> np.ndarray: ...

    def load_mix(self, i: int) -> np.ndarray: ...


def dataset_rate(dataset: Dataset) -> int:
    """The rate the dataset decodes to."""
    rate = getattr(dataset, "sample_rate", None)
    if not rate:
        raise ValueError(f"{type(dataset).__name__} has no sample_rate: cannot cut segments")
    return int(rate)


def default_activity() -> ActivityFn:
    from trainer.data.dataset import activity

    return activity


@dataclass
class SegmentSet:
    """Segments of many pieces and their embeddings.

    label: (N,) int, the dataset track whose part is the answer (a pseudo piece's label track);
    group: (N,) int, the piece a segment was cut from (dataset index, or pseudo-piece id);
    start: (N,) float seconds within the piece; active: (5, N) bool, part audible in the segment;
    emb: {(fn, input): (N, D) float32}.
    """

    seconds: float
    sample_rate: int
    label: np.ndarray
    group: np.ndarray
    start: np.ndarray
    active: np.ndarray
    emb: dict[Job, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, rows: np.ndarray) -> SegmentSet:
        """The segments at ``rows`` (an index or boolean array), embeddings included."""
        return SegmentSet(self.seconds, self.sample_rate, self.label[rows], self.group[rows],
                          self.start[rows], self.active[:, rows],
                          {k: v[rows] for k, v in self.emb.items()})


class _Collector:
    """Gathers the windows of pieces for one segment length and embeds them in batches.

    With ``skip_silent_stems``, a part's clean stem is embedded only in the windows where that
    part is audible (the only ones the audible-only tables read); the other rows stay NaN.
    """

    def __init__(self, seconds: float, sr: int, fns: Mapping[str, EmbedFn], jobs: Iterable[Job],
                 batch_size: int, max_segments: int | None, activity: ActivityFn,
                 skip_silent_stems: bool = False):
        self.seconds, self.sr = seconds, sr
        self.win = int(round(seconds * sr))
        self.batch_size = max(1, batch_size)
        self.max_segments = max_segments
        self.activity = activity
        self.skip_silent_stems = skip_silent_stems
        self.by_input: dict[str, list[str]] = {}
        for fn, inp in sorted(set(jobs)):
            if fn not in fns:
                raise KeyError(f"no embedding function named {fn!r}")
            if inp not in INPUTS:
                raise ValueError(f"unknown input {inp!r}; expected one of {', '.join(INPUTS)}")
            self.by_input.setdefault(inp, []).append(fn)
        self.fns = fns
        self.pending: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
            inp: [] for inp in self.by_input}
        self.rows: dict[str, list[np.ndarray]] = {inp: [] for inp in self.by_input}
        self.out: dict[Job, list[np.ndarray]] = {
            (fn, inp): [] for inp, names in self.by_input.items() for fn in names}
        self.label: list[int] = []
        self.group: list[int] = []
        self.start: list[float] = []
        self.active: list[np.ndarray] = []

    def add(self, mix: np.ndarray, parts: np.ndarray, label: int, group: int) -> int:
        """Cut one piece (mix (n,), parts (5, n)); returns the number of segments added."""
        n = min(len(mix), parts.shape[1])
        if n == 0:
            return 0
        first = len(self.label)
        starts = segment_starts(n, self.sr, self.seconds, max_windows=self.max_segments)
        clips_parts = np.stack([_clip(parts[:, :n], s, self.win) for s in starts])  # (S, 5, win)
        act = np.zeros((len(starts), N_PARTS), dtype=bool)
        for i, clip in enumerate(clips_parts):
            a = np.asarray(self.activity(clip, self.sr, self.seconds), dtype=bool)
            if a.ndim != 2 or a.shape[0] != N_PARTS or a.shape[1] < 1:
                raise ValueError(f"activity() returned shape {a.shape} for one window")
            act[i] = a[:, 0]
        self.active += list(act)
        self.label += [label] * len(starts)
        self.group += [group] * len(starts)
        self.start += (starts / self.sr).tolist()
        for inp in self.by_input:
            keep = np.arange(len(starts))
            if inp == "mix":
                clips = np.stack([_clip(mix[:n], s, self.win) for s in starts])
            else:
                c = part_index(inp)
                if self.skip_silent_stems:
                    keep = np.flatnonzero(act[:, c])
                clips = clips_parts[keep, c]
            if not len(keep):
                continue
            self.pending[inp].append((first + keep, np.ascontiguousarray(clips, np.float32)))
            if sum(len(r) for r, _ in self.pending[inp]) >= self.batch_size:
                self._flush(inp)
        return len(starts)

    def _flush(self, inp: str) -> None:
        if not self.pending[inp]:
            return
        rows = np.concatenate([r for r, _ in self.pending[inp]])
        clips = np.concatenate([c for _, c in self.pending[inp]])
        self.pending[inp] = []
        for i in range(0, len(clips), self.batch_size):
            batch = clips[i:i + self.batch_size]
            for fn in self.by_input[inp]:
                emb = np.asarray(self.fns[fn](batch), dtype=np.float32)
                if emb.ndim != 2 or len(emb) != len(batch):
                    raise ValueError(f"embedding function {fn!r} returned shape {emb.shape} "
                                     f"for {len(batch)} clips; expected (B, D)")
                self.out[(fn, inp)].append(emb)
        self.rows[inp].append(rows)

    def finish(self) -> SegmentSet:
        n = len(self.label)
        for inp in self.by_input:
            self._flush(inp)
        emb = {}
        for (fn, inp), chunks in self.out.items():
            if not chunks:
                emb[(fn, inp)] = np.full((n, 0), np.nan, np.float32)
                continue
            values = np.concatenate(chunks)
            full = np.full((n, values.shape[1]), np.nan, np.float32)
            full[np.concatenate(self.rows[inp])] = values
            emb[(fn, inp)] = full
        active = (np.stack(self.active, axis=1) if self.active
                  else np.zeros((N_PARTS, 0), dtype=bool))
        return SegmentSet(self.seconds, self.sr, np.asarray(self.label, dtype=np.int64),
                          np.asarray(self.group, dtype=np.int64),
                          np.asarray(self.start, dtype=np.float32), active, emb)


def _clip(x: np.ndarray, start: int, win: int) -> np.ndarray:
    """x[..., start:start + win], zero-padded at the end when the piece is shorter."""
    c = x[..., start:start + win]
    if c.shape[-1] < win:
        pad = [(0, 0)] * (c.ndim - 1) + [(0, win - c.shape[-1])]
        c = np.pad(c, pad)
    return c


def _progress(iterable: Iterable, total: int, desc: str, enabled: bool) -> Iterable:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="piece", leave=False)


def collect_pieces(dataset: Dataset, indices: Sequence[int], jobs: Mapping[float, Iterable[Job]],
                   fns: Mapping[str, EmbedFn], *, batch_size: int = 32,
                   max_segments: int | None = None, activity: ActivityFn | None = None,
                   skip_silent_stems: bool = False,
                   progress: bool = False) -> dict[float, SegmentSet]:
    """Embed the segments of dataset pieces for every segment length in ``jobs``.

    jobs: {seconds: [(fn name, input), ...]}; each track at ``indices`` is decoded once and cut
    at every length. label = group = the track's dataset index. ``max_segments`` keeps at most
    that many windows per track and length, spread evenly. ``skip_silent_stems``: embed a
    clean stem only where it is audible (NaN rows elsewhere).
    """
    sr = dataset_rate(dataset)
    act = activity or default_activity()
    cols = {s: _Collector(s, sr, fns, j, batch_size, max_segments, act, skip_silent_stems)
            for s, j in jobs.items()}
    for i in _progress(indices, len(indices), "embedding pieces", progress):
        parts = np.asarray(dataset.load_parts(i), dtype=np.float32)
        mix = np.asarray(dataset.load_mix(i), dtype=np.float32)
        if parts.ndim != 2 or parts.shape[0] != N_PARTS or mix.ndim != 1:
            raise ValueError(f"track {i}: expected parts (5, n) and mix (n,), "
                             f"got {parts.shape} and {mix.shape}")
        for col in cols.values():
            col.add(mix, parts, label=i, group=i)
    return {s: c.finish() for s, c in cols.items()}


@dataclass(frozen=True)
class PseudoPiece:
    """``part`` from track ``label`` mixed with every other part from track ``other``."""

    part: str
    label: int
    other: int
    piece: int


def plan_pseudo_pieces(tracks: Sequence[Any], part: str, n_labels: int | None = 10,
                       per_label: int | None = 4, seed: int = 0,
                       indices: Sequence[int] | None = None) -> list[PseudoPiece]:
    """Choose the pseudo pieces that test ``part`` (sec. 4.2.2), deterministically from ``seed``.

    ``n_labels`` label tracks that have ``part``, each mixed with ``per_label`` distinct other
    tracks that have some other part. The others come from the label's tempo class; where that
    class holds too few tracks, from the nearest classes (a small test set cannot fill 36 classes).
    Fewer labels when fewer tracks qualify; ``None``: every label track, or every other track
    per label (the ordering is the same). Piece ids are 0, 1, ... in plan order.
    """
    c = part_index(part)
    pool = list(range(len(tracks))) if indices is None else list(indices)
    rng = np.random.default_rng([seed, c])
    labels = [i for i in pool if bool(tracks[i].present[c])]
    others = [i for i in pool if any(bool(p) for j, p in enumerate(tracks[i].present) if j != c)]
    if n_labels is not None and len(labels) < n_labels:
        log.info("%s: %d tracks have this part, fewer than the %d labels asked for",
                 part, len(labels), n_labels)
    chosen = [labels[j] for j in rng.permutation(len(labels))[:n_labels]]
    plan: list[PseudoPiece] = []
    for a in chosen:
        cand = [b for b in others if b != a]
        if not cand:
            continue
        gap = np.array([abs(int(tracks[b].tempo_class) - int(tracks[a].tempo_class)) for b in cand])
        order = np.lexsort((rng.random(len(cand)), gap))[:per_label]
        plan += [PseudoPiece(part, a, cand[j], len(plan) + n) for n, j in enumerate(order)]
    return plan


@dataclass
class DrawPlan:
    """Seeded draws of pseudo pieces, each piece embedded once however many draws hold it.

    pieces: the distinct pseudo pieces (ids 0, 1, ... in order); draws[d][part]: the ids of
    the pieces that draw d uses to test ``part``.
    """

    pieces: list[PseudoPiece]
    draws: list[dict[str, list[int]]]


def plan_draws(tracks: Sequence[Any], parts: Sequence[str], n_labels: int | None, per_label: int | None,
               seed: int, draws: int, indices: Sequence[int] | None = None) -> DrawPlan:
    """``draws`` plans of :func:`plan_pseudo_pieces` (seeds ``seed``, ``seed + 1``, ...),
    merged so that a pseudo piece drawn twice is embedded once. Draw 0 is the single-draw plan.
    ``indices``: tracks[i] of the plan is dataset track ``indices[i]`` (a subset evaluated)."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    ids: dict[tuple[str, int, int], int] = {}
    pieces: list[PseudoPiece] = []
    out: list[dict[str, list[int]]] = []
    for d in range(draws):
        chosen: dict[str, list[int]] = {}
        for p in parts:
            chosen[p] = []
            for pp in plan_pseudo_pieces(tracks, p, n_labels, per_label, seed + d):
                label = pp.label if indices is None else int(indices[pp.label])
                other = pp.other if indices is None else int(indices[pp.other])
                key = (p, label, other)
                if key not in ids:
                    ids[key] = len(pieces)
                    pieces.append(PseudoPiece(p, label, other, ids[key]))
                chosen[p].append(ids[key])
        out.append(chosen)
    return DrawPlan(pieces, out)


PLANS = ("auto", "drawn", "every")


def every_pair(tracks: Sequence[Any], parts: Sequence[str], n_labels: int, plan: str) -> bool:
    """Whether Table 2 tests every pair of the split (each track that has a part as its label,
    mixed with every other track that has some other part) rather than seeded draws.

    ``plan``: ``"every"``, ``"drawn"``, or ``"auto"``: every pair when no part has more label
    tracks than ``n_labels``. Then every draw would hold every label, and each label's pieces
    are chosen by tempo first, so the draws repeat nearly the same few pieces: ten of them
    are about one, and whole-split pairs use the split's music instead.
    """
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {', '.join(PLANS)}, got {plan!r}")
    if plan != "auto":
        return plan == "every"
    most = max((sum(bool(t.present[part_index(p)]) for t in tracks) for p in parts), default=0)
    return most <= n_labels


def table2_plan(tracks: Sequence[Any], parts: Sequence[str], n_labels: int, per_label: int,
                seed: int, draws: int, plan: str = "auto",
                indices: Sequence[int] | None = None) -> tuple[bool, DrawPlan]:
    """The pseudo pieces Table 2 scores: (True, every pair once) when :func:`every_pair` says
    so, else (False, ``draws`` seeded draws of ``n_labels`` x ``per_label``). ``indices`` as for
    :func:`plan_draws`."""
    if every_pair(tracks, parts, n_labels, plan):
        return True, plan_draws(tracks, parts, None, None, seed, 1, indices=indices)
    return False, plan_draws(tracks, parts, n_labels, per_label, seed, draws, indices=indices)


def tempo_mismatches(tracks: Sequence[Any], plan: Sequence[PseudoPiece]) -> int:
    """How many pseudo pieces mix tracks of different tempo classes."""
    return sum(int(tracks[p.label].tempo_class) != int(tracks[p.other].tempo_class) for p in plan)


def mix_pseudo(label_parts: np.ndarray, other_parts: np.ndarray, part: str,
               max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(5, n) stems of the label track and of the other track -> (mix (L,), parts (5, L)).

    L is the shorter of the two (and at most ``max_samples``); ``part`` comes from the label
    track, every other part from the other track; the mix is the sum of the five.
    """
    c = part_index(part)
    n = min(label_parts.shape[1], other_parts.shape[1])
    if max_samples is not None:
        n = min(n, max_samples)
    parts = other_parts[:, :n].copy()
    parts[c] = label_parts[c, :n]
    return parts.sum(axis=0, dtype=np.float32), parts


def collect_pseudo(dataset: Dataset, plan: Sequence[PseudoPiece], seconds: float,
                   jobs: Mapping[str, Iterable[Job]], fns: Mapping[str, EmbedFn], *,
                   batch_size: int = 32, max_seconds: float | None = None,
                   max_segments: int | None = None, activity: ActivityFn | None = None,
                   cache_bytes: int = 2 << 30, progress: bool = False,
                   twins: bool = False) -> dict[str, SegmentSet]:
    """Embed the segments of the pseudo pieces in ``plan``; one SegmentSet per tested part.

    jobs: {part: [(fn, input)]} to run on that part's pseudo pieces. label = the label track,
    group = the pseudo piece id. Decoded stems (cut to ``max_seconds``) stay cached while a
    later piece needs them, within ``cache_bytes``; beyond it, the track needed last goes first.

    ``twins``: every other piece of a label (its 2nd, 4th, ... in plan order) takes the label
    part from the label track's twin (``partwise-train data twins``): the same notes in another
    program, font and effects, so pieces that share the part share its notes and, half the
    time, not its sound. A ValueError when no label track of the plan has a twin of its part.
    """
    sr = dataset_rate(dataset)
    act = activity or default_activity()
    parts_tested = sorted({p.part for p in plan}, key=part_index)
    cols = {p: _Collector(seconds, sr, fns, jobs.get(p, ()), batch_size, max_segments, act)
            for p in parts_tested}
    max_samples = None if max_seconds is None else int(round(max_seconds * sr))
    uses: dict[int, list[int]] = {}
    for step, p in enumerate(plan):
        for i in (p.label, p.other):
            uses.setdefault(i, []).append(step)
    cache: dict[int, np.ndarray] = {}

    def next_use(i: int, step: int) -> float:
        later = [u for u in uses[i] if u > step]
        return later[0] if later else float("inf")

    def stems(i: int, step: int) -> np.ndarray:
        if i not in cache:
            x = np.asarray(dataset.load_parts(i), dtype=np.float32)
            cache[i] = np.ascontiguousarray(x[:, :max_samples]) if max_samples else x
            while len(cache) > 2 and sum(v.nbytes for v in cache.values()) > cache_bytes:
                keep = {plan[step].label, plan[step].other}
                victim = max((k for k in cache if k not in keep),
                             key=lambda k: next_use(k, step))
                del cache[victim]
        return cache[i]

    twin_of = _twin_pieces(dataset, plan, max_samples) if twins else {}
    for step, p in enumerate(_progress(plan, len(plan), "embedding pseudo pieces", progress)):
        label = stems(p.label, step)
        if p.piece in twin_of:
            label = label.copy()
            x = twin_of[p.piece]
            n = min(len(x), label.shape[1])
            label[part_index(p.part)] = 0.0
            label[part_index(p.part), :n] = x[:n]
        mix, parts = mix_pseudo(label, stems(p.other, step), p.part, max_samples)
        cols[p.part].add(mix, parts, label=p.label, group=p.piece)
        for i in (p.label, p.other):
            if next_use(i, step) == float("inf"):
                cache.pop(i, None)
    return {p: c.finish() for p, c in cols.items()}


def _twin_pieces(dataset: Dataset, plan: Sequence[PseudoPiece], max_samples: int | None
                 ) -> dict[int, np.ndarray]:
    """piece id -> its label part's twin, for every other piece of each (part, label) in plan
    order whose label track has a twin of the part (see :func:`collect_pseudo`)."""
    load = getattr(dataset, "load_twins", None)
    seen: dict[tuple[str, int], int] = {}
    loaded: dict[int, dict[int, np.ndarray]] = {}
    out: dict[int, np.ndarray] = {}
    for p in plan:
        rank = seen.get((p.part, p.label), 0)
        seen[(p.part, p.label)] = rank + 1
        if rank % 2 == 0 or load is None:
            continue
        if p.label not in loaded:
            loaded[p.label] = load(p.label)
        x = loaded[p.label].get(part_index(p.part))
        if x is not None:
            out[p.piece] = np.ascontiguousarray(x[:max_samples]) if max_samples else x
    if not out:
        raise ValueError("no label track of Table 2 has a twin of its part: render them with "
                         "'partwise-train data twins ROOT --split SPLIT --parts ...'")
    return out
