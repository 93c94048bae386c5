"""Part-locked journeys on a library whose drums come in a few grooves and whose other parts
drift: the locked part stays within its bound at every step, steps are distinct, A-to-B ends at
B and moves towards it, the radio never repeats."""

import numpy as np
import pytest

from app.focus import similarity
from app.index import IndexParams, VectorIndex
from app.journey import JourneyError, build, parse_lock
from model.parts import EMBED_DIM, N_PARTS, PARTS, part_slice, part_sq_distances

N = 600
GROOVES = 6


def _library(exact: bool = True, seed: int = 0) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (GROOVES, 128)).astype(np.float32)
    groove = rng.integers(0, GROOVES, N)
    vecs = rng.normal(0, 1, (N, EMBED_DIM)).astype(np.float32)
    vecs[:, part_slice("drums")] = centres[groove] + 0.15 * rng.normal(0, 1, (N, 128))
    params = IndexParams(exact_below=10 ** 9) if exact else IndexParams(exact_below=50)
    idx = VectorIndex(params)
    idx.upsert(range(1, N + 1), [1] * N, vecs)
    idx.maintain(force=True)
    return idx, vecs, groove


@pytest.mark.parametrize("exact", [True, False])
def test_a_to_b_keeps_the_drums_and_moves_the_rest_towards_b(exact):
    idx, vecs, groove = _library(exact)
    a, b = 1, int(np.flatnonzero(groove != groove[0])[0]) + 1
    j = build(idx, a, b, steps=12, lock="drums")
    assert j.ids[0] == a and j.ids[-1] == b and len(j.ids) == 13
    assert len(set(j.ids)) == len(j.ids)
    inner = j.steps[1:-1]
    assert all(s.held for s in inner)
    assert (j.locked_similarity()[:-1] >= j.floor).all()
    # every inner step shares A's groove (the drums stay), and the piano heads for B's
    assert all(groove[s.track_id - 1] == groove[0] for s in inner)
    scales = idx.scales()
    p = PARTS.index("piano")
    to_b = [similarity(part_sq_distances(vecs[b - 1], vecs[s.track_id - 1][None])[0], scales)[p]
            for s in inner]
    assert np.mean(to_b[-4:]) > np.mean(to_b[:4])
    for s in j.steps[1:]:
        assert s.to_previous.shape == (N_PARTS,) and "drums" in s.why
    assert j.steps[-1].why.startswith("destination")


def test_radio_never_repeats_and_keeps_the_bass_near_each_neighbour():
    idx, vecs, _ = _library()
    # make the bass a slow walk: neighbours in id order have close bass
    walk = np.cumsum(np.random.default_rng(3).normal(0, 0.2, (N, 128)), axis=0).astype(np.float32)
    vecs[:, part_slice("bass")] = walk
    idx.upsert(range(1, N + 1), [2] * N, vecs)
    idx.maintain(force=True)
    j = build(idx, 300, None, steps=30, lock=["bass"], follow="neighbour", floor=0.3)
    assert len(j.ids) == 31 and len(set(j.ids)) == 31
    assert all(s.held for s in j.steps[1:])
    assert (j.locked_similarity() >= 0.3).all()
    # the unlocked parts do change: the drums of consecutive steps are not all alike
    d = PARTS.index("drums")
    assert np.mean([s.to_previous[d] for s in j.steps[1:]]) < 0.9


def test_bad_requests_name_the_problem():
    idx, _, _ = _library()
    with pytest.raises(JourneyError, match="no analysed track with id 99999"):
        build(idx, 99999, 2)
    with pytest.raises(JourneyError, match="two different tracks"):
        build(idx, 5, 5)
    with pytest.raises(JourneyError, match="unknown part 'cowbell'"):
        parse_lock("cowbell")
    with pytest.raises(JourneyError, match="nothing to move"):
        parse_lock(PARTS)
    with pytest.raises(JourneyError, match="no drums"):
        build(idx, 1, 2, presence=lambda i: np.array([0.0, 1, 1, 1, 1]))
    with pytest.raises(JourneyError, match="too few tracks"):
        build(idx, 1, 2, steps=N + 5)


def test_radio_stops_when_the_library_runs_out():
    idx, _, _ = _library()
    small = VectorIndex(IndexParams(exact_below=10 ** 9))
    ids = [1, 2, 3, 4]
    small.upsert(ids, [1] * 4, np.stack([idx.vector(i) for i in ids]))
    j = build(small, 1, None, steps=10, lock="drums", floor=0.0)
    assert sorted(j.ids) == ids


def test_searches_between_two_tracks_answer_as_a_search_for_each_blend():
    idx, vecs, _ = _library(exact=True)
    a, b = idx.vector(3), idx.vector(40)
    between = idx.between(a, b)
    assert between is not None
    rng = np.random.default_rng(4)
    for _ in range(6):
        t = rng.choice([0.0, 0.25, 0.5, 1.0], N_PARTS).astype(np.float32)
        w = rng.uniform(-1, 1, N_PARTS).astype(np.float32)
        w[rng.integers(N_PARTS)] = 1.0
        target = ((1 - np.repeat(t, 128)) * a + np.repeat(t, 128) * b).astype(np.float32)
        assert np.allclose(between.target(t), target)
        got, want = between.search(t, w, 20, exclude={3, 40}), idx.search(target, w, 20, exclude={3, 40})
        assert got.ids.tolist() == want.ids.tolist()
        assert np.allclose(got.scores, want.scores, atol=1e-5)
    idx.remove([int(got.ids[0])])  # the index changed: the blend asks it
    assert int(got.ids[0]) not in between.search(t, w, 20).ids.tolist()
    graphs, _, _ = _library(exact=False)
    assert graphs.between(a, b) is None  # with graphs, each step is a cheap search of its own
