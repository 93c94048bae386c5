import numpy as np
import pytest
import torch

from model.parts import N_PARTS
from trainer.bank import StemBank, audible
from trainer.sampling import (
    SegmentIndex,
    Source,
    Triplet,
    TripletSampler,
    individual_triplets,
    solo_pieces,
    stem_pieces,
)


def _index(n_tracks=24, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    active = []
    for _ in range(n_tracks):
        # every part active in some windows; some parts absent in some tracks
        parts = []
        for _j in range(N_PARTS):
            if rng.random() < 0.2:
                parts.append(np.array([], dtype=np.int64))
            else:
                parts.append(np.sort(rng.choice(np.arange(0, 100_000, 1000), 20, replace=False)))
        active.append(parts)
    return SegmentIndex(tempo_class=rng.integers(0, n_classes, n_tracks), active=active)


def _src(piece):
    return {j: s for j, s in enumerate(piece) if s is not None}


def test_basic_and_additional_triplet_invariants():
    idx = _index()
    sampler = TripletSampler(idx, pseudo=True, additional=True, same_tempo=True, keep_prob=0.5)
    trips = sampler.draw(300, np.random.default_rng(1))
    assert sorted({t.cond for t in trips}) == list(range(N_PARTS))
    for t in trips:
        c = t.cond
        a, p, n = _src(t.anchor), _src(t.positive), _src(t.negative)
        # the condition part is always mixed, from A in anchor and positive, from D in negative
        assert c in a and c in p and c in n
        assert a[c].track == p[c].track != n[c].track
        assert a[c].start in idx.active[a[c].track][c]
        # the positive differs from the anchor in every other part (C instead of B)
        others_a = {s.track for j, s in a.items() if j != c}
        others_p = {s.track for j, s in p.items() if j != c}
        others_n = {s.track for j, s in n.items() if j != c}
        assert len(others_a) == 1 and len(others_p) == 1
        assert others_a.isdisjoint(others_p)
        # the basic negative shares the anchor's non-c parts (same source, same parts mixed)
        assert others_n == others_a
        assert set(a) == set(n) == set(p)
        # four distinct tracks from one tempo class
        tracks = {a[c].track, n[c].track, *others_a, *others_p}
        assert len(tracks) == 4
        assert len({int(idx.tempo_class[x]) for x in tracks}) == 1
        # the additional triplet is the swapped one, under c' != c, sounding in B and C
        c2 = t.additional
        assert c2 is not None and c2 != c and c2 in a
        assert a[c2].start in idx.active[a[c2].track][c2]
        assert p[c2].start in idx.active[p[c2].track][c2]


def _same_audio(t):
    """(positive's c-part is the anchor's, negative's other parts are the anchor's) as booleans."""
    c = t.cond
    a, p, n = _src(t.anchor), _src(t.positive), _src(t.negative)
    return a[c] == p[c], all(a[j] == n[j] for j in a if j != c)


def test_aligned_triplets_share_the_same_audio():
    idx = _index()
    never = TripletSampler(idx, keep_prob=0.5).draw(300, np.random.default_rng(4))
    # the default draws every piece at its own time: sharing a start is then rare
    assert sum(all(_same_audio(t)) for t in never) < 30
    always = TripletSampler(idx, keep_prob=0.5, aligned=1.0).draw(300, np.random.default_rng(4))
    assert all(all(_same_audio(t)) for t in always)
    half = TripletSampler(idx, keep_prob=0.5, aligned=0.5).draw(400, np.random.default_rng(4))
    n_same = sum(all(_same_audio(t)) for t in half)
    assert 140 < n_same < 260
    # aligned or not, the triplet keeps its tracks: A's c-part in anchor and positive, D's in
    # the negative, B's other parts in anchor and negative
    for t in always:
        a, p, n = _src(t.anchor), _src(t.positive), _src(t.negative)
        assert a[t.cond].track == p[t.cond].track != n[t.cond].track
        assert {s.track for j, s in p.items() if j != t.cond}.isdisjoint(
            {s.track for j, s in a.items() if j != t.cond})
    with pytest.raises(ValueError, match="probability"):
        TripletSampler(idx, aligned=1.5)


def test_solo_pieces_are_one_audible_part_each():
    idx = _index()
    pieces = solo_pieces(idx, 100, np.random.default_rng(5))
    assert len(pieces) == 100
    parts = []
    for piece in pieces:
        (c, src), = _src(piece).items()  # exactly one part sounds
        assert src.start in idx.active[src.track][c]  # at a window where that part is audible
        parts.append(c)
    # the parts come in turn: each of the five 20 times
    assert np.bincount(parts, minlength=N_PARTS).tolist() == [20] * N_PARTS
    assert solo_pieces(idx, 0, np.random.default_rng(5)) == []


def test_made_silences_drop_some_parts():
    idx = _index()
    trips = TripletSampler(idx, keep_prob=0.5).draw(300, np.random.default_rng(2))
    mixed = np.array([[s is not None for s in t.anchor] for t in trips])
    assert mixed.sum(axis=1).min() >= 2  # c and c'
    assert (~mixed).sum() > 0.2 * mixed.size


def test_without_pseudo_pieces_triplets_are_dataset_pieces():
    idx = _index()
    trips = TripletSampler(idx, pseudo=False).draw(50, np.random.default_rng(3))
    for t in trips:
        for piece in (t.anchor, t.positive, t.negative):
            assert len({(s.track, s.start) for s in piece}) == 1
        assert t.anchor[0].track == t.positive[0].track != t.negative[0].track
        assert t.additional is None


def test_deterministic_for_a_seed():
    idx = _index()
    s = TripletSampler(idx)
    assert s.draw(20, np.random.default_rng(5)) == s.draw(20, np.random.default_rng(5))


def test_individual_triplets_same_track_positive():
    idx = _index()
    for a, p, n in individual_triplets(idx, 1, 50, np.random.default_rng(0)):
        assert a.track == p.track != n.track
        assert a.start in idx.active[a.track][1] and n.start in idx.active[n.track][1]


def test_too_few_tracks_is_a_clear_error():
    idx = _index(n_tracks=3)
    with pytest.raises(ValueError, match="tempo class"):
        TripletSampler(idx, same_tempo=True)


def test_bank_silence_targets_match_the_mixed_stems():
    sr, n = 1000, 20_000
    rng = np.random.default_rng(0)
    parts = []
    for t in range(6):
        x = rng.normal(0, 0.1, (N_PARTS, n)).astype(np.float32)
        x[t % N_PARTS] = 0  # one part silent per track
        parts.append(x)
    bank = StemBank(parts, [0] * 6, sr, segment_seconds=2.0, hop_seconds=1.0, threshold_db=-50)
    assert all(len(bank.index.active[t][t % N_PARTS]) == 0 for t in range(6))
    trips = TripletSampler(bank.index, same_tempo=True, keep_prob=0.5).draw(40, rng)
    from trainer.sampling import flatten

    pieces = flatten(trips)
    clips, present = bank.render(pieces)
    stems = bank.stems(pieces)
    assert torch.allclose(clips, stems.sum(dim=1), atol=1e-6)  # the mix is the sum of its stems
    for i, piece in enumerate(pieces):
        for j, src in enumerate(piece):
            expect = src is not None and bool(audible(stems[i, j], -50))
            assert bool(present[i, j]) == expect


def _db(x: torch.Tensor) -> float:
    return float(10 * torch.log10(x.pow(2).mean()))


def test_level_brings_audible_parts_to_one_level_and_leaves_silence():
    from trainer.bank import MAX_BOOST_DB, level

    rng = np.random.default_rng(1)
    tone = torch.from_numpy(rng.normal(0, 1, 8000).astype(np.float32))
    for start_db in (-6.0, -20.0, -30.0):
        x = tone / tone.pow(2).mean().sqrt() * 10 ** (start_db / 20)
        assert _db(level(x, -24.0, -50.0)) == pytest.approx(-24.0, abs=1e-3)
    quiet = tone / tone.pow(2).mean().sqrt() * 10 ** (-45 / 20)  # audible, but boost is capped
    assert _db(level(quiet, -24.0, -50.0)) == pytest.approx(-45.0 + MAX_BOOST_DB, abs=1e-3)
    faint = tone * 1e-4  # below the audibility threshold: untouched
    assert torch.equal(level(faint, -24.0, -50.0), faint)
    assert torch.equal(level(torch.zeros(100), -24.0, -50.0), torch.zeros(100))


def test_bank_render_levels_each_part_before_the_gains():
    from trainer.bank import level
    from trainer.sampling import flatten

    sr, n = 1000, 20_000
    rng = np.random.default_rng(2)
    parts = [(rng.normal(0, 1, (N_PARTS, n)) * (10 ** (np.arange(N_PARTS) * -6 / 20))[:, None]
              * 0.1).astype(np.float32) for _ in range(6)]
    bank = StemBank(parts, [0] * 6, sr, segment_seconds=2.0, hop_seconds=1.0, threshold_db=-50)
    pieces = flatten(TripletSampler(bank.index, same_tempo=True, keep_prob=0.5).draw(10, rng))
    gains = rng.uniform(-8, 0, (len(pieces), N_PARTS))
    clips, present = bank.render(pieces, gains, level_db=-24.0)
    stems = bank.stems(pieces)
    expect = torch.zeros_like(clips)
    for i in range(len(pieces)):
        for j in range(N_PARTS):
            expect[i] += level(stems[i, j], -24.0, -50.0) * float(10 ** (gains[i, j] / 20))
    assert torch.allclose(clips, expect, atol=1e-5)
    assert bool((present.sum(dim=1) > 0).all())


def test_bank_from_several_datasets_pools_and_names_the_tracks():
    class Fake:
        def __init__(self, name, n, sr=1000):
            from pathlib import Path
            from types import SimpleNamespace

            self.root, self.split, self.sample_rate = Path(name), "train", sr
            self.tracks = [SimpleNamespace(name=f"T{i}", tempo_class=i % 2) for i in range(n)]

        def __len__(self):
            return len(self.tracks)

        def load_parts(self, i):
            return np.full((N_PARTS, 3000), 0.1 * (i + 1), dtype=np.float32)

    bank = StemBank.from_datasets([Fake("gen", 3), Fake("real", 2)], segment_seconds=1.0,
                                  hop_seconds=0.5, progress=False, threads=2)
    assert bank.names == ["gen/T0", "gen/T1", "gen/T2", "real/T0", "real/T1"]
    assert list(bank.index.tempo_class) == [0, 1, 0, 0, 1]
    assert float(bank.audio[4][0, 0]) == pytest.approx(0.2, rel=1e-3)  # order kept
    capped = StemBank.from_datasets([Fake("gen", 3), Fake("real", 2)], segment_seconds=1.0,
                                    hop_seconds=0.5, progress=False, max_tracks=1)
    assert capped.names == ["gen/T0", "real/T0"]
    with pytest.raises(ValueError, match="sample rates"):
        StemBank.from_datasets([Fake("a", 2), Fake("b", 2, sr=2000)], segment_seconds=1.0,
                               hop_seconds=0.5, progress=False)
    weighted = StemBank.from_datasets([Fake("gen", 3), Fake("real", 2)], segment_seconds=1.0,
                                      hop_seconds=0.5, progress=False, weights=[1.0, 4.0])
    assert list(weighted.index.weight) == [1, 1, 1, 4, 4]
    assert list(bank.index.weight) == [1] * 5 and bank.index.uniform
    with pytest.raises(ValueError, match="2 dataset weights for 1 datasets"):
        StemBank.from_datasets([Fake("gen", 3)], segment_seconds=1.0, hop_seconds=0.5,
                               progress=False, weights=[1.0, 2.0])


def _with_weight(idx, weight):
    return SegmentIndex(tempo_class=idx.tempo_class, active=idx.active, weight=weight)


def test_weights_alike_draw_the_same_triplets_as_no_weights():
    idx = _index()
    alike = _with_weight(idx, np.full(len(idx), 3.0))
    for pseudo in (True, False):
        a = TripletSampler(idx, pseudo=pseudo).draw(40, np.random.default_rng(5))
        b = TripletSampler(alike, pseudo=pseudo).draw(40, np.random.default_rng(5))
        assert a == b
    assert solo_pieces(idx, 20, np.random.default_rng(1)) == solo_pieces(alike, 20, np.random.default_rng(1))


def test_weighted_tracks_are_drawn_that_much_more_often():
    idx = _index(n_tracks=40, n_classes=2, seed=3)
    heavy = np.arange(len(idx)) % 4 == 0  # a quarter of the tracks
    weighted = _with_weight(idx, np.where(heavy, 4.0, 1.0))

    def heavy_share(index, pseudo):
        trips = TripletSampler(index, pseudo=pseudo).draw(3000, np.random.default_rng(0))
        tracks = [s.track for t in trips for s in (t.anchor[t.cond], t.negative[t.cond])]
        return heavy[tracks].mean()

    for pseudo in (True, False):
        plain, more = heavy_share(idx, pseudo), heavy_share(weighted, pseudo)
        assert 0.18 < plain < 0.32  # about a quarter without weights
        assert 0.48 < more < 0.66  # 4 x 10 / (4 x 10 + 30) = 0.57 with them
    solo = solo_pieces(weighted, 3000, np.random.default_rng(0))
    share = heavy[[next(s.track for s in p if s is not None) for p in solo]].mean()
    assert 0.48 < share < 0.66
    trip = individual_triplets(weighted, 0, 3000, np.random.default_rng(0))
    assert 0.48 < heavy[[a.track for a, _, _ in trip]].mean() < 0.66


def test_bad_track_weights_are_refused():
    idx = _index(n_tracks=6)
    for bad in ([1, 1, 1], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, np.nan]):
        with pytest.raises(ValueError, match="6 positive numbers"):
            _with_weight(idx, np.array(bad, dtype=float))


def test_part_weights_set_how_often_each_part_is_the_condition():
    idx = _index(n_tracks=40, n_classes=2)
    # weights alike: the same triplets and groups as none
    plain, alike = TripletSampler(idx), TripletSampler(idx, part_weights=[2.0] * N_PARTS)
    assert plain.draw(32, np.random.default_rng(4)) == alike.draw(32, np.random.default_rng(4))
    weights = [1.0, 0.5, 2.0, 2.0, 1.0]
    sampler = TripletSampler(idx, part_weights=weights)
    for n in (32, 7, 1000):
        conds = sampler.conditions(n, np.random.default_rng(n))
        counts = np.bincount(conds, minlength=N_PARTS)
        share = n * np.array(weights) / sum(weights)
        assert counts.sum() == n and np.all(np.abs(counts - share) < 1.0), (n, counts, share)
    trips = sampler.draw(650, np.random.default_rng(0))
    counts = np.bincount([t.cond for t in trips], minlength=N_PARTS)
    assert counts.tolist() == [100, 50, 200, 200, 100]
    groups = sampler.label_groups(65, 4, np.random.default_rng(1))
    shared = [next(j for j in range(N_PARTS) if len({p[j] for p in g}) == 1 and g[0][j] is not None)
              for g in groups]
    assert np.bincount(shared, minlength=N_PARTS).tolist() == [10, 5, 20, 20, 10]
    # the order is random, not one part after another
    assert len(set(t.cond for t in trips[:20])) > 2
    for bad in ([1, 1, 1], [1, 1, 0, 1, 1], [1, 1, np.inf, 1, 1]):
        with pytest.raises(ValueError, match="part weights"):
            TripletSampler(idx, part_weights=bad)


def test_source_labels_follow_flatten_order():
    from trainer.sampling import Source, Triplet, flatten, source_labels

    a = (Source(3, 0), None, Source(4, 10), None, None)
    p = (Source(3, 5), Source(8, 0), None, None, Source(1, 0))
    n = (Source(6, 0), None, Source(4, 10), None, None)
    trip = [Triplet(a, p, n, cond=0), Triplet(n, a, p, cond=2)]
    lab = source_labels(trip)
    assert lab.shape == (6, N_PARTS) and lab.dtype == torch.long
    assert lab[0].tolist() == [3, -1, 4, -1, -1] and lab[1].tolist() == [3, 8, -1, -1, 1]
    assert lab[3].tolist() == lab[2].tolist() == [6, -1, 4, -1, -1]
    assert len(flatten(trip)) == len(lab)
    # by track and time: the positive's drums start elsewhere in track 3, so they differ
    timed = source_labels(trip, same_time=True)
    assert timed[0, 0] != timed[1, 0] and timed[0, 2] == timed[2, 2] and timed[0, 1] == -1


def test_label_groups_share_one_parts_audio_and_nothing_else():
    idx = _index(n_tracks=40, n_classes=2)
    sampler = TripletSampler(idx, same_tempo=True, keep_prob=0.7)
    groups = sampler.label_groups(20, 4, np.random.default_rng(5))
    assert len(groups) == 20 and all(len(g) == 4 for g in groups)
    conds = []
    for g in groups:
        shared = [j for j in range(N_PARTS) if all(p[j] is not None for p in g)
                  and len({p[j] for p in g}) == 1]
        assert len(shared) == 1  # one part, the same audio (track and time) in every piece
        c = shared[0]
        conds.append(c)
        label = g[0][c]
        assert label.start in idx.active[label.track][c]
        songs = []
        for piece in g:
            rest = {(s.track, s.start) for j, s in _src(piece).items() if j != c}
            assert len(rest) <= 1  # the other parts come from one song at one time
            songs += [t for t, _ in rest]
            tracks = {s.track for s in _src(piece).values()}
            assert len({int(idx.tempo_class[t]) for t in tracks}) == 1
        assert label.track not in songs
        assert len(songs) == len(set(songs))  # each piece its own song
    # the conditions spread evenly over the parts
    assert sorted(np.bincount(conds, minlength=N_PARTS)) == [4] * N_PARTS
    # keep_prob thins the other parts
    kept = np.mean([p[j] is not None for g, c in zip(groups, conds, strict=True) for p in g
                    for j in range(N_PARTS) if j != c])
    assert 0.55 < kept < 0.85
    with pytest.raises(ValueError, match="size >= 2"):
        sampler.label_groups(3, 1, np.random.default_rng(0))


def test_label_groups_at_another_time_share_the_label_track_not_its_audio():
    idx = _index(n_tracks=40, n_classes=2)
    sampler = TripletSampler(idx, same_tempo=True, keep_prob=0.7)
    # off: the same groups as before the option existed (no extra draws)
    assert sampler.label_groups(6, 4, np.random.default_rng(5)) == \
        sampler.label_groups(6, 4, np.random.default_rng(5), other_time=0.0)
    groups = sampler.label_groups(40, 4, np.random.default_rng(7), other_time=0.5)
    moved = 0
    for g in groups:
        # the label part is the one present in every piece from one track
        c = next(j for j in range(N_PARTS) if all(p[j] is not None for p in g)
                 and len({p[j].track for p in g}) == 1)
        label = g[0][c]
        for piece in g[1:]:
            src = piece[c]
            assert src.track == label.track and src.start in idx.active[label.track][c]
            moved += src != label
            assert label.track not in {s.track for j, s in _src(piece).items() if j != c}
    # about half of the 120 pieces after the first take another time (some draw the same one)
    assert 35 <= moved <= 75
    with pytest.raises(ValueError, match="other_time must be a probability"):
        sampler.label_groups(3, 4, np.random.default_rng(0), other_time=1.5)


def test_label_groups_repeat_songs_only_when_a_tempo_class_is_small():
    idx = _index(n_tracks=6, n_classes=1)
    groups = TripletSampler(idx, same_tempo=True).label_groups(5, 8, np.random.default_rng(2))
    assert all(len(g) == 8 for g in groups)


def test_bank_render_all_at_once_matches_part_by_part():
    """The GPU's way of mixing (every part of every piece at once) gives the CPU's mixes."""
    from trainer.sampling import flatten

    sr, n = 1000, 20_000
    rng = np.random.default_rng(3)
    parts = [(rng.normal(0, 1, (N_PARTS, n)) * (10 ** (np.arange(N_PARTS) * -12 / 20))[:, None]
              * 0.05).astype(np.float32) for _ in range(6)]
    for t in range(6):
        parts[t][t % N_PARTS] = 0  # one part silent per track
    bank = StemBank(parts, [0] * 6, sr, segment_seconds=2.0, hop_seconds=1.0, threshold_db=-50)
    assert not bank.batched  # a CPU bank mixes part by part
    pieces = flatten(TripletSampler(bank.index, same_tempo=True, keep_prob=0.5).draw(12, rng))
    gains = rng.uniform(-8, 0, (len(pieces), N_PARTS))
    for args in ((None, None), (gains, None), (None, -24.0), (gains, -24.0)):
        bank.batched = False
        clips, present = bank.render(pieces, *args)
        bank.batched = True
        clips_b, present_b = bank.render(pieces, *args)
        assert torch.allclose(clips_b, clips, atol=1e-6)
        assert torch.equal(present_b, present)
    assert bool(present.sum(dim=1).min() >= 1) and bool((present == 0).any())
    empty = [tuple([None] * N_PARTS)] * 2  # nothing mixed: silence, nothing present
    clips_b, present_b = bank.render(empty)
    assert not clips_b.any() and not present_b.any()


def test_equalize_colours_a_clip_by_its_curve():
    from trainer.bank import EQ_POINTS_HZ, eq_response, equalize

    sr, n = 16000, 16000
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.normal(0, 0.1, (3, n)).astype(np.float32))
    k = len(EQ_POINTS_HZ)
    flat = torch.zeros(3, k)
    assert torch.allclose(equalize(x, flat, sr), x, atol=1e-5)  # 0 dB everywhere: unchanged
    assert torch.allclose(equalize(x, flat + 6.0, sr), x * 10 ** (6 / 20), atol=1e-4)
    # a tilt: -12 dB at the lowest point rising to +12 dB at the highest moves power up in
    # frequency, and between two points the curve is linear in dB along log-frequency
    tilt = torch.linspace(-12, 12, k).expand(3, k)
    y = equalize(x, tilt, sr)

    def band(z, lo, hi):
        spec = torch.fft.rfft(z).abs().pow(2)
        f = torch.fft.rfftfreq(n, 1 / sr)
        return spec[..., (f >= lo) & (f < hi)].mean()

    assert band(y, 20, 60) / band(x, 20, 60) == pytest.approx(10 ** (-12 / 10), rel=0.1)
    assert band(y, 6000, 8000) / band(x, 6000, 8000) == pytest.approx(10 ** (12 / 10), rel=0.1)
    resp = eq_response(tilt[:1], n, sr)[0]
    mid = np.sqrt(EQ_POINTS_HZ[2] * EQ_POINTS_HZ[3])  # halfway in log-frequency
    expect_db = (tilt[0, 2] + tilt[0, 3]) / 2
    assert 20 * torch.log10(resp[int(round(mid))]) == pytest.approx(float(expect_db), abs=0.1)


def test_bank_render_eq_colours_each_part_then_levels_it():
    from trainer.bank import equalize, level
    from trainer.sampling import flatten

    sr, n = 1000, 20_000
    rng = np.random.default_rng(5)
    parts = [(rng.normal(0, 1, (N_PARTS, n)) * 0.1).astype(np.float32) for _ in range(6)]
    bank = StemBank(parts, [0] * 6, sr, segment_seconds=2.0, hop_seconds=1.0, threshold_db=-50)
    pieces = flatten(TripletSampler(bank.index, same_tempo=True, keep_prob=0.5).draw(6, rng))
    eq = rng.uniform(-6, 6, (len(pieces), N_PARTS, 6))
    clips, present = bank.render(pieces, level_db=-24.0, eq_db=eq)
    plain, present0 = bank.render(pieces, level_db=-24.0)
    stems = bank.stems(pieces)
    expect = torch.zeros_like(clips)
    for i in range(len(pieces)):
        for j in range(N_PARTS):
            coloured = equalize(stems[i, j][None], torch.as_tensor(eq[i, j], dtype=torch.float32)[None], sr)[0]
            expect[i] += level(coloured, -24.0, -50.0)
    assert torch.allclose(clips, expect, atol=1e-5)
    assert not torch.allclose(clips, plain, atol=1e-3)
    assert torch.equal(present, present0)  # levelled parts stay audible: the same targets


def test_stem_pieces_are_each_anchors_condition_part_alone():
    a = (Source(1, 0), Source(2, 5), Source(3, 7), None, Source(4, 9))
    other = (Source(8, 0),) * N_PARTS
    trip = [Triplet(a, other, other, cond=2), Triplet(a, other, other, cond=0),
            Triplet(other, a, a, cond=4)]
    rows, stems = stem_pieces(trip)
    assert rows == [0, 1, 2]
    assert stems == [(None, None, Source(3, 7), None, None), (Source(1, 0), None, None, None, None),
                     (None, None, None, None, Source(8, 0))]
    rows, stems = stem_pieces(trip, parts=[2, 4])
    assert rows == [0, 2] and stems[0] == (None, None, Source(3, 7), None, None)
    assert stem_pieces(trip, parts=[3]) == ([], [])
