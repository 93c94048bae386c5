"""Pseudo musical pieces and triplets (paper sec. 3.4), as plain index data.

A *piece* says, for each of the five parts, which training track it comes from and where the
segment starts (or ``None`` when the part is not mixed in: a made silence). A *dataset piece*
takes every part from one track at one time. Audio is only made later, by the stem bank, so the
rules here are cheap to test.

Basic triplet for condition c: anchor (A, B), positive (A, C), negative (D, B) -- the positive
shares the anchor's c-part, the negative shares its other parts. The additional triplet reuses
the same three pieces as anchor (A, B), positive (D, B), negative (A, C) under a condition
c' != c that both B and C sound in, so the non-c parts are learned from the same audio.

By default each piece takes its segment of a track at its own random time, so the positive
shares the anchor's c-part only as "the same track" (the music-ID signal). With ``aligned``
(a probability per triplet) the positive takes the anchor's c-part from the same time and
the negative takes the anchor's other parts from the same time: the shared parts are then the
same audio, and the triplet asks for exactly what Table 2 measures, a c-subspace that moves
with the c-part and with nothing else in the mix.

Every triplet piece mixes at least two parts (the condition part and, for the additional
triplet, c'), so a clean stem alone never reaches the norm loss through them. :func:`solo_pieces`
draws such single stems, for the norm loss alone: Table 3 asks which subspace is the longest
when one part plays by itself.

:meth:`TripletSampler.label_groups` draws Table 2's own structure: groups of pieces that share
one part's audio (one label track, one time) and take every other part from a different song.
A step's triplets give the in-batch contrastive term about one such pair per aligned triplet;
the groups give it K - 1 positives for each of their rows.

With ``twin`` (a probability) the positive of an aligned triplet whose condition is among
``twin_parts``, and every piece of a label group after the first that takes the label part at
the label's time, takes the part from its *twin* where the track has one: the same notes at the
same time, rendered in another program, font and effects chain. The shared part is then the
notes, not the sound, and a subspace cannot find it by a per-song timbre. (A positive at another
time in another timbre would share only the song's harmony, which no network here reads.)

The conditions of a step's triplets and groups are spread evenly over the parts, or, with
``part_weights``, in proportion to a weight per part: a part weighted 2 is the condition of
twice as many triplets (and groups) as a part weighted 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model.parts import N_PARTS


@dataclass(frozen=True)
class Source:
    track: int
    start: int  # sample offset of the segment in that track
    twin: bool = False  # the part's twin (the same notes in another timbre), not its own stem


Piece = tuple[Source | None, ...]  # one entry per part, model.parts.PARTS order


@dataclass(frozen=True)
class Triplet:
    anchor: Piece
    positive: Piece
    negative: Piece
    cond: int
    additional: int | None = None  # condition c' of the additional triplet, if any


@dataclass
class SegmentIndex:
    """Where each part is active: ``active[t][p]`` = start samples of windows where part p of
    track t is audible; ``tempo_class[t]`` = its tempo class; ``weight[t]`` = how often track t
    is drawn relative to the others (default: all alike); ``twin[t, p]`` = part p of track t has
    a twin (``partwise-train data twins``; default: none has)."""

    tempo_class: np.ndarray
    active: list[list[np.ndarray]]
    weight: Sequence[float] | None = None
    twin: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.tempo_class = np.asarray(self.tempo_class)
        assert len(self.active) == len(self.tempo_class)
        self.has = np.array([[len(a) > 0 for a in parts] for parts in self.active], dtype=bool)
        self.has = self.has.reshape(len(self.active), N_PARTS)
        w = np.ones(len(self.active)) if self.weight is None else np.asarray(self.weight, dtype=float)
        if w.shape != (len(self.active),) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"track weights must be {len(self.active)} positive numbers")
        self.weight = w
        self.uniform = bool(np.all(w == w[0])) if len(w) else True
        self.twin = (np.zeros((len(self.active), N_PARTS), dtype=bool) if self.twin is None
                     else np.asarray(self.twin, dtype=bool).reshape(len(self.active), N_PARTS))

    def __len__(self) -> int:
        return len(self.tempo_class)

    def p(self, tracks: np.ndarray) -> np.ndarray | None:
        """Draw probabilities over ``tracks`` by weight; None when the weights are alike, so a
        draw then uses numpy's uniform path (the same numbers as before weights existed)."""
        if self.uniform:
            return None
        w = self.weight[tracks]
        return w / w.sum()


def dataset_piece(track: int, start: int) -> Piece:
    return tuple(Source(track, start) for _ in range(N_PARTS))


class TripletSampler:
    """Draws pseudo-piece triplets (or, with ``pseudo=False``, dataset-piece triplets)."""

    def __init__(self, index: SegmentIndex, *, pseudo: bool = True, additional: bool = True,
                 same_tempo: bool = True, keep_prob: float = 0.6, aligned: float = 0.0,
                 part_weights: Sequence[float] | None = None, twin: float = 0.0,
                 twin_parts: Sequence[int] = ()):
        if not 0.0 <= aligned <= 1.0:
            raise ValueError(f"aligned is a probability, got {aligned}")
        if not 0.0 <= twin <= 1.0:
            raise ValueError(f"twin is a probability, got {twin}")
        self.twin = twin
        self.twin_parts = frozenset(int(c) for c in twin_parts)
        if part_weights is not None:
            part_weights = np.asarray(part_weights, dtype=float)
            if part_weights.shape != (N_PARTS,) or not np.all(np.isfinite(part_weights)) \
                    or np.any(part_weights <= 0):
                raise ValueError(f"part weights: need {N_PARTS} positive numbers, got {part_weights}")
            if np.all(part_weights == part_weights[0]):
                part_weights = None  # alike: evenly, drawn as without weights
        self.part_weights = part_weights
        self.index = index
        self.aligned = aligned
        self.pseudo = pseudo
        self.additional = additional and pseudo
        self.keep_prob = keep_prob
        groups = index.tempo_class if same_tempo else np.zeros(len(index), dtype=int)
        self.groups = {int(g): np.flatnonzero(groups == g) for g in np.unique(groups)}
        # groups usable for each condition: >= 2 tracks with the part, >= 4 tracks in all
        self.usable = {
            c: [g for g, m in self.groups.items() if len(m) >= 4 and index.has[m, c].sum() >= 2]
            for c in range(N_PARTS)
        }
        self.usable_conds = [c for c in range(N_PARTS) if self.usable[c]]
        # a tempo group is picked by the mean weight of its tracks (uniformly when all are alike)
        mean_weight = {g: index.weight[m].mean() for g, m in self.groups.items()}
        self.group_p = {c: None if index.uniform or not gs else
                        np.array([mean_weight[g] for g in gs]) / sum(mean_weight[g] for g in gs)
                        for c, gs in self.usable.items()}
        if not self.usable_conds and pseudo:
            raise ValueError("no tempo class has enough tracks to mix pseudo pieces "
                             "(need 4 tracks, 2 with the condition part); use more tracks "
                             "or same_tempo=False")

    def _start(self, rng: np.random.Generator, track: int, part: int | None) -> int:
        starts = (self.index.active[track][part] if part is not None
                  else np.concatenate(self.index.active[track]))
        if len(starts) == 0:
            starts = np.concatenate(self.index.active[track])
        return int(rng.choice(starts)) if len(starts) else 0

    def _twinned(self, src: Source, c: int, rng: np.random.Generator) -> Source:
        """``src`` as its twin, with chance ``twin``, where part c of its track has one (no draw
        from rng unless twins are on for c, so earlier runs' triplets are unchanged)."""
        if self.twin > 0.0 and c in self.twin_parts and self.index.twin[src.track, c] \
                and rng.random() < self.twin:
            return Source(src.track, src.start, twin=True)
        return src

    def conditions(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` condition parts in random order: each usable part about equally often, or
        with ``part_weights`` in proportion to its weight (whole shares first, the remainder
        drawn by the fractions left over)."""
        usable = np.array(self.usable_conds or range(N_PARTS))
        if self.part_weights is None:
            return rng.permutation(np.resize(usable, n))
        share = n * self.part_weights[usable] / self.part_weights[usable].sum()
        counts = np.floor(share).astype(int)
        rest, frac = n - int(counts.sum()), share - counts
        if rest > 0:
            counts[rng.choice(len(usable), rest, replace=False, p=frac / frac.sum())] += 1
        return rng.permutation(np.repeat(usable, counts))

    def draw(self, n: int, rng: np.random.Generator) -> list[Triplet]:
        """``n`` basic triplets, conditions spread over the usable parts (:meth:`conditions`)."""
        conds = self.conditions(n, rng)
        draw = self._pseudo if self.pseudo else self._dataset
        return [draw(int(c), rng) for c in conds]

    def _dataset(self, c: int, rng: np.random.Generator) -> Triplet:
        with_c = np.flatnonzero(self.index.has[:, c])
        a, d = rng.choice(with_c, 2, replace=False, p=self.index.p(with_c))
        return Triplet(
            anchor=dataset_piece(int(a), self._start(rng, int(a), c)),
            positive=dataset_piece(int(a), self._start(rng, int(a), c)),
            negative=dataset_piece(int(d), self._start(rng, int(d), c)),
            cond=c,
        )

    def _pseudo(self, c: int, rng: np.random.Generator) -> Triplet:
        has = self.index.has
        for _ in range(100):
            members = self.groups[int(rng.choice(self.usable[c], p=self.group_p[c]))]
            with_c = members[has[members, c]]
            a, d = rng.choice(with_c, 2, replace=False, p=self.index.p(with_c))
            rest = members[(members != a) & (members != d)]
            if len(rest) < 2:
                continue
            b, cc = (int(x) for x in rng.choice(rest, 2, replace=False, p=self.index.p(rest)))
            shared = [j for j in range(N_PARTS) if j != c and has[b, j] and has[cc, j]]
            if self.additional and not shared:
                continue
            keep = {j for j in range(N_PARTS) if j != c and rng.random() < self.keep_prob}
            c2 = None
            if self.additional:
                c2 = int(rng.choice(shared))
                keep.add(c2)
            # the else-parts of one source come from one time, so they still sound together
            # (no draw from rng unless aligned is on, so earlier runs' triplets are unchanged)
            same = self.aligned > 0.0 and rng.random() < self.aligned
            b1 = self._start(rng, b, c2)
            b2 = b1 if same else self._start(rng, b, c2)
            c_start = self._start(rng, cc, c2)

            def piece(c_src: Source, other: int, start: int, keep=keep) -> Piece:
                return tuple(c_src if j == c else (Source(other, start) if j in keep else None)
                             for j in range(N_PARTS))

            a_src1 = Source(int(a), self._start(rng, int(a), c))
            a_src2 = a_src1 if same else Source(int(a), self._start(rng, int(a), c))
            if same:  # the twin of the same notes: only where the positive shares the anchor's time
                a_src2 = self._twinned(a_src2, c, rng)
            d_src = Source(int(d), self._start(rng, int(d), c))
            return Triplet(
                anchor=piece(a_src1, b, b1),
                positive=piece(a_src2, cc, c_start),
                negative=piece(d_src, b, b2),
                cond=c,
                additional=c2,
            )
        raise RuntimeError(f"could not draw a triplet for part {c} in 100 tries")

    def label_groups(self, n: int, size: int, rng: np.random.Generator,
                     other_time: float = 0.0) -> list[list[Piece]]:
        """``n`` groups of ``size`` pseudo pieces, as Table 2 builds them: in a group, part c
        comes from one label track at one time in every piece, and the other parts of each
        piece from its own song (one time for all of them, each kept with ``keep_prob``), so
        two pieces of a group share part c's audio and nothing else. The conditions are spread
        over the usable parts as the triplets' are (:meth:`conditions`); with ``same_tempo`` a
        group's songs share a tempo class (songs repeat only where the class has fewer than
        ``size`` others).

        With ``other_time`` (a probability per piece after the first) a piece takes part c
        from another time of the label track instead: the same song's part, not the same
        audio, which is what Table 1's music-ID asks to find."""
        if n < 0 or size < 2:
            raise ValueError(f"label groups: need n >= 0 and size >= 2, got n={n}, size={size}")
        if not 0.0 <= other_time <= 1.0:
            raise ValueError(f"label groups: other_time must be a probability, got {other_time}")
        conds = self.conditions(n, rng)
        return [self._group(int(c), size, rng, other_time) for c in conds]

    def _group(self, c: int, size: int, rng: np.random.Generator,
               other_time: float = 0.0) -> list[Piece]:
        has = self.index.has
        members = self.groups[int(rng.choice(self.usable[c], p=self.group_p[c]))]
        with_c = members[has[members, c]]
        a = int(rng.choice(with_c, p=self.index.p(with_c)))
        label = Source(a, self._start(rng, a, c))
        rest = members[members != a]
        others = rng.choice(rest, size, replace=len(rest) < size, p=self.index.p(rest))
        out = []
        for i, b in enumerate(int(x) for x in others):
            start = self._start(rng, b, None)
            # (no draw from rng unless other_time is on, so earlier runs' groups are unchanged)
            own = (Source(a, self._start(rng, a, c))
                   if other_time > 0.0 and i > 0 and rng.random() < other_time else label)
            if i > 0 and own == label:  # the same notes, at the label's time
                own = self._twinned(own, c, rng)
            out.append(tuple(own if j == c else
                             (Source(b, start) if rng.random() < self.keep_prob else None)
                             for j in range(N_PARTS)))
        return out


def group_labels(groups: Sequence[Sequence[Piece]], device: torch.device | str = "cpu",
                 same_time: bool = False) -> torch.Tensor:
    """:func:`piece_labels` for label groups, a row per piece in group order, where every piece
    of a group carries the group's label on its label part (the part all its pieces take from
    one track), also a piece that takes it at another time (``label_groups(other_time=...)``):
    within a group the label part is a positive whatever ``same_time`` says of other rows."""
    out = []
    for g in groups:
        lab = piece_labels(g, device, same_time)
        shared = [j for j in range(N_PARTS) if all(p[j] is not None for p in g)
                  and len({p[j].track for p in g}) == 1]
        for j in shared[:1]:
            lab[:, j] = lab[0, j]
        out.append(lab)
    return torch.cat(out) if out else torch.zeros(0, N_PARTS, dtype=torch.long, device=device)


def individual_triplets(index: SegmentIndex, part: int, n: int,
                        rng: np.random.Generator) -> list[tuple[Source, Source, Source]]:
    """Clean-stem triplets for one part's individual network: same track = positive."""
    with_p = np.flatnonzero(index.has[:, part])
    if len(with_p) < 2:
        raise ValueError(f"part {part} is audible in fewer than 2 training tracks")
    out = []
    for _ in range(n):
        a, d = rng.choice(with_p, 2, replace=False, p=index.p(with_p))
        s = index.active
        out.append((Source(int(a), int(rng.choice(s[a][part]))),
                    Source(int(a), int(rng.choice(s[a][part]))),
                    Source(int(d), int(rng.choice(s[d][part])))))
    return out


def solo_pieces(index: SegmentIndex, n: int, rng: np.random.Generator) -> list[Piece]:
    """``n`` pieces of one audible part each (a clean stem), the parts taken in turn from those
    audible in at least one track, each from a random track and window where it sounds."""
    if n < 0:
        raise ValueError(f"solo pieces: n must be >= 0, got {n}")
    parts = [c for c in range(N_PARTS) if index.has[:, c].any()]
    if not parts:
        raise ValueError("no part is audible in any track")
    out = []
    for c in rng.permutation(np.resize(np.array(parts), n)):
        with_c = np.flatnonzero(index.has[:, c])
        track = int(rng.choice(with_c, p=index.p(with_c)))
        start = int(rng.choice(index.active[track][c]))
        out.append(tuple(Source(track, start) if j == c else None for j in range(N_PARTS)))
    return out


def stem_pieces(triplets: Sequence[Triplet], parts: Sequence[int] | None = None
                ) -> tuple[list[int], list[Piece]]:
    """The clean stem of each triplet's anchor in its condition part (the same source, alone),
    for the triplets whose condition is in ``parts`` (all when None) -> (their indices, the
    stems)."""
    rows = [i for i, t in enumerate(triplets) if parts is None or t.cond in parts]
    return rows, [tuple(src if j == triplets[i].cond else None for j, src in enumerate(triplets[i].anchor))
                  for i in rows]


def flatten(triplets: Sequence[Triplet]) -> list[Piece]:
    """[a0, p0, n0, a1, p1, n1, ...] for rendering in one batch."""
    return [p for t in triplets for p in (t.anchor, t.positive, t.negative)]


def source_labels(triplets: Sequence[Triplet], device: torch.device | str = "cpu",
                  same_time: bool = False) -> torch.Tensor:
    """(3 * len(triplets), 5) long tensor in :func:`flatten`'s row order: the track each part
    of each piece comes from, -1 where the part is not mixed in (model.losses.part_contrast_loss
    calls two rows' c-parts the same when they share it). With ``same_time`` the label is the
    track and the segment's start, so only the same audio of a part counts as shared (what the
    aligned triplets and Table 2's pseudo pieces share)."""
    return piece_labels(flatten(triplets), device, same_time)


def piece_labels(pieces: Sequence[Piece], device: torch.device | str = "cpu",
                 same_time: bool = False) -> torch.Tensor:
    """:func:`source_labels` for any list of pieces: (len(pieces), 5), a row per piece."""
    def label(src: Source | None) -> int:
        if src is None:
            return -1
        return src.track * (1 << 32) + src.start if same_time else src.track

    rows = [[label(src) for src in piece] for piece in pieces]
    return torch.tensor(rows, dtype=torch.long, device=device).reshape(-1, N_PARTS)
