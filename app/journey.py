"""Part-locked journeys: a path of tracks that keeps some parts close while the rest moves.

Two kinds, both built on the engine's focus search (:meth:`app.index.VectorIndex.search`):

- **A to B** in ``steps`` steps: step i (1 <= i < steps) looks for the track nearest a target
  whose unlocked parts lie the fraction i / steps of the way from A's to B's, and whose locked
  parts are A's (``follow="start"``) or the previous step's (``follow="neighbour"``). The last
  step is B.
- **Radio** (no B): each step keeps the locked parts close to the reference (A, or the previous
  step) and weighs the other parts slightly *against* similarity (:data:`RADIO_MOVE`), so the
  music around the locked parts keeps changing.

Locked parts weigh :data:`LOCK_WEIGHT` in the focus, the moving ones 1. A candidate whose
similarity to the reference falls under ``floor`` in any locked part is passed over while any
other candidate holds the bound; no track appears twice. Every step records its per-part
similarity to the previous and the next step: why it was chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from app.focus import ABSENT, similarity
from model.parts import EMBED_DIM, N_PARTS, PARTS, part_index, part_sq_distances

LOCK_WEIGHT = 3.0
RADIO_MOVE = -0.25  # focus weight of the unlocked parts on the radio: prefer a change
CANDIDATES = 64
DEFAULT_FLOOR = 0.5  # locked-part similarity to the reference a step should keep


class JourneyError(ValueError):
    """A journey that cannot be built as asked (unknown track, nothing to lock, too few tracks)."""


@dataclass
class Step:
    """One track of a journey: its id, the per-part similarity (5,) to the previous and next
    step (None at the ends), to the locked parts' reference, and whether it holds the bound."""

    track_id: int
    to_previous: np.ndarray | None = None
    to_next: np.ndarray | None = None
    to_reference: np.ndarray | None = None
    held: bool = True
    why: str = ""


@dataclass
class Journey:
    start: int
    end: int | None
    lock: tuple[str, ...]
    follow: str
    floor: float
    steps: list[Step] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [s.track_id for s in self.steps]

    def locked_similarity(self) -> np.ndarray:
        """(len(steps) - 1,) the smallest locked-part similarity of each step after the first to
        its reference."""
        li = [PARTS.index(p) for p in self.lock]
        return np.array([float(np.min(s.to_reference[li])) for s in self.steps[1:]
                         if s.to_reference is not None], np.float32)


def parse_lock(lock: Sequence[str] | str) -> tuple[str, ...]:
    """"drums,bass" or ["drums", "bass"] -> ("drums", "bass") in PARTS order; KeyError/ValueError
    name what is wrong."""
    names = lock.split(",") if isinstance(lock, str) else list(lock)
    try:
        out = {PARTS[part_index(n.strip())] for n in names if n.strip()}
    except ValueError as e:
        raise JourneyError(f"lock: {e}") from None
    if not out:
        raise JourneyError("lock at least one part (drums, bass, piano, guitar or others)")
    if len(out) == N_PARTS:
        raise JourneyError("locking all five parts leaves nothing to move")
    return tuple(p for p in PARTS if p in out)


def _why(sim: np.ndarray, lock: Sequence[int]) -> str:
    moved = [c for c in range(N_PARTS) if c not in lock]
    kept = ", ".join(f"{PARTS[c]} {sim[c]:.2f}" for c in lock)
    change = min(moved, key=lambda c: sim[c])
    return f"keeps {kept}; {PARTS[change]} changes ({sim[change]:.2f})"


def build(index, start: int, end: int | None = None, *, steps: int = 12,
          lock: Sequence[str] | str = ("drums",), follow: str = "start", floor: float = DEFAULT_FLOOR,
          presence: Callable[[int], np.ndarray] | None = None, avoid: Sequence[int] = ()) -> Journey:
    """A journey over ``index`` (an :class:`app.index.VectorIndex`): from track ``start`` to
    track ``end`` in ``steps`` steps, or a radio of ``steps`` tracks after ``start`` when ``end``
    is None. ``presence(id)`` (5,) lets it refuse to lock a part the start track lacks;
    ``avoid`` lists ids never to visit."""
    if follow not in ("start", "neighbour"):
        raise JourneyError(f"follow must be 'start' or 'neighbour', not {follow!r}")
    if steps < 1:
        raise JourneyError(f"steps must be at least 1, got {steps}")
    if not 0.0 <= floor < 1.0:
        raise JourneyError(f"floor must lie in [0, 1), got {floor}")
    locked = parse_lock(lock)
    li = [PARTS.index(p) for p in locked]
    a = _vector(index, start)
    b = _vector(index, end) if end is not None else None
    if end is not None and end == start:
        raise JourneyError("a journey needs two different tracks")
    if presence is not None:
        pa = np.asarray(presence(start), np.float32)
        missing = [PARTS[c] for c in li if pa[c] < ABSENT]
        if missing:
            raise JourneyError(f"track {start} has (almost) no {', '.join(missing)}: nothing to lock")
    scales = index.scales()
    w = np.ones(N_PARTS, np.float32) if end is not None else np.full(N_PARTS, RADIO_MOVE, np.float32)
    w[li] = LOCK_WEIGHT
    mask = np.zeros(N_PARTS, bool)
    mask[li] = True
    wide = np.repeat(mask, EMBED_DIM // N_PARTS)

    journey = Journey(start, end, locked, follow, floor, [Step(start)])
    visited = {int(start), *map(int, avoid)}
    if end is not None:
        visited.add(int(end))
    prev = a
    inner = steps - 1 if end is not None else steps
    # from A to B with the locked parts A's, every target blends A and B part by part: the index
    # can answer all the steps from two passes over its vectors
    blend = index.between(a, b) if b is not None and follow == "start" else None
    for i in range(1, inner + 1):
        ref = a if follow == "start" else prev
        if blend is not None:
            hits = blend.search(np.where(mask, 0.0, i / steps), w, CANDIDATES, exclude=visited)
            pick = _choose(index, None, w, ref, li, scales, floor, visited, hits)
        else:
            if b is not None:
                t = (1.0 - i / steps) * a + (i / steps) * b
                target = np.where(wide, ref, t).astype(np.float32)
            else:
                target = np.where(wide, ref, prev).astype(np.float32)
            pick = _choose(index, target, w, ref, li, scales, floor, visited)
        if pick is None:
            if end is None:
                break  # the radio ran out of tracks
            raise JourneyError(f"the library has too few tracks for {steps} steps")
        tid, vec, held = pick
        visited.add(tid)
        journey.steps.append(Step(tid, held=held))
        prev = vec
    if b is not None:
        journey.steps.append(Step(int(end)))
    _annotate(index, journey, li, scales)
    return journey


def _vector(index, track_id: int) -> np.ndarray:
    v = index.vector(int(track_id))
    if v is None:
        raise JourneyError(f"no analysed track with id {track_id} in the library")
    return np.asarray(v, np.float32)


def _choose(index, target: np.ndarray | None, w: np.ndarray, ref: np.ndarray, li: list[int],
            scales: np.ndarray, floor: float, visited: set[int], hits=None) -> tuple[int, np.ndarray, bool] | None:
    """The best unvisited candidate for ``target`` that keeps every locked part at least
    ``floor`` similar to ``ref``; without one, the candidate whose weakest locked part is the
    most similar (held = False). None when no unvisited track is left. ``hits``: the search for
    ``target`` already made."""
    if hits is None:
        hits = index.search(target, w, CANDIDATES, exclude=visited)
    if not len(hits.ids):
        return None
    vecs = np.stack([index.vector(int(i)) for i in hits.ids])
    lock_sim = similarity(part_sq_distances(ref, vecs), scales)[:, li].min(axis=1)
    ok = np.flatnonzero(lock_sim >= floor)
    if len(ok):
        j = int(ok[0])  # hits are best first
        return int(hits.ids[j]), vecs[j], True
    j = int(np.argmax(lock_sim))
    return int(hits.ids[j]), vecs[j], False


def _pair(x: np.ndarray, y: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return similarity(part_sq_distances(x, y[None, :])[0], scales)


def _annotate(index, journey: Journey, li: list[int], scales: np.ndarray) -> None:
    vecs = np.stack([_vector(index, s.track_id) for s in journey.steps])
    for k, s in enumerate(journey.steps):
        if k:
            s.to_previous = _pair(vecs[k - 1], vecs[k], scales)
            s.to_reference = _pair(vecs[0] if journey.follow == "start" else vecs[k - 1], vecs[k], scales)
            s.why = _why(s.to_reference, li)
            if k == len(vecs) - 1 and journey.end is not None:
                s.held = bool(s.to_reference[li].min() >= journey.floor)
                s.why = "destination; " + s.why
        if k + 1 < len(vecs):
            s.to_next = _pair(vecs[k], vecs[k + 1], scales)
    journey.steps[0].why = "start"
