import numpy as np
import pytest

from model.parts import PARTS
from tests.trainer import evalfakes as F
from trainer.evaluate.segments import (
    collect_pieces,
    collect_pseudo,
    mix_pseudo,
    plan_draws,
    plan_pseudo_pieces,
    tempo_mismatches,
)
from trainer.evaluate.tables import (
    cross_correlation,
    csn_method,
    effective_dimension,
    mix_presence,
    music_id,
    per_part_method,
    pseudo_separation,
    pseudo_separation_draws,
    shared_method,
    stem_identification_confusion,
    stem_identification_table,
    stem_mix_correlation,
    stem_presence,
)

FNS = {"oracle": F.oracle, "leaky": F.leaky, "constant": F.constant, "noise": F.noise,
       **{f"ind_{p}": F.per_part(j) for j, p in enumerate(PARTS)}}


@pytest.fixture(scope="module")
def data():
    # track 0 has no piano, track 1 no guitar, track 2's bass rests for its first 3 s
    return F.ToneDataset(n_tracks=8, seconds=12.0, absent={(0, 2), (1, 3)},
                         gaps={(2, 1): (0.0, 3.0)})


@pytest.fixture(scope="module")
def pieces(data):
    jobs = {(fn, inp) for fn in ("oracle", "leaky", "constant", "noise")
            for inp in ("mix", *PARTS)}
    jobs |= {(f"ind_{p}", p) for p in PARTS} | {(f"ind_{p}", "mix") for p in PARTS}
    return collect_pieces(data, range(len(data)), {3.0: jobs, 6.0: {("oracle", "mix")}}, FNS,
                          batch_size=5, activity=F.activity)


def test_segments_cut_every_length_from_one_decode(data, pieces):
    s3, s6 = pieces[3.0], pieces[6.0]
    assert len(s3) == 8 * 4 and len(s6) == 8 * 2
    assert s3.emb[("oracle", "mix")].shape == (32, 640)
    assert s3.emb[("ind_bass", "bass")].shape == (32, 128)
    assert list(s3.label[:4]) == [0] * 4 and s3.start[1] == pytest.approx(3.0)
    # activity follows the stems: no piano in track 0, bass of track 2 silent in its first window
    assert not s3.active[2, :4].any() and s3.active[2, 4:].all()
    assert not s3.active[1, 8] and s3.active[1, 9]


def test_table1_oracle_is_perfect_and_constant_is_chance(pieces):
    s3 = pieces[3.0]
    assert music_id(s3, csn_method("p", "oracle")) == {p: 100.0 for p in PARTS}
    chance = music_id(s3, csn_method("c", "constant"))
    assert all(v < 40.0 for v in chance.values())
    assert np.mean(list(chance.values())) < 25.0
    # the individual networks, on clean stems and on the mix, are perfect here too
    ind = {p: f"ind_{p}" for p in PARTS}
    assert music_id(s3, per_part_method("i", ind, "stem")) == {p: 100.0 for p in PARTS}
    assert music_id(s3, per_part_method("i", ind, "mix")) == {p: 100.0 for p in PARTS}


def test_audible_only_leaves_out_silent_parts(pieces):
    s3 = pieces[3.0]
    loose = music_id(s3, csn_method("p", "oracle"), audible_only=False)
    # the piano of track 0 is silent: its 4 zero vectors still find each other, so the oracle
    # stays perfect, but a constant embedding now scores over all 32 segments
    assert loose["piano"] == 100.0
    assert music_id(s3, csn_method("c", "constant"), audible_only=False)["piano"] < 40


def test_table3_oracle_identifies_every_stem_constant_is_chance(pieces):
    acc, count = stem_identification_table(pieces[3.0], "oracle")
    assert acc == {p: 100.0 for p in PARTS}
    assert count["piano"] == 28 and count["bass"] == 31 and count["drums"] == 32
    acc, _ = stem_identification_table(pieces[3.0], "constant", seed=1)
    assert 5.0 < np.mean(list(acc.values())) < 40.0


def _bass_as_guitar(clips: np.ndarray) -> np.ndarray:
    """The oracle with the bass and guitar subspaces swapped: every bass is taken for guitar."""
    e = F.oracle(clips).reshape(len(clips), len(PARTS), -1)
    e[:, [1, 3]] = e[:, [3, 1]]
    return e.reshape(len(clips), -1)


def test_table3_confusion_says_what_each_part_is_taken_for(data, pieces):
    taken = stem_identification_confusion(pieces[3.0], "oracle")
    assert taken == {p: {q: 100.0 * (p == q) for q in PARTS} for p in PARTS}
    swapped = collect_pieces(data, range(len(data)), {3.0: {("swap", p) for p in PARTS}},
                             {"swap": _bass_as_guitar}, batch_size=5, activity=F.activity)[3.0]
    taken = stem_identification_confusion(swapped, "swap")
    assert taken["bass"]["guitar"] == 100.0 and taken["guitar"]["bass"] == 100.0
    assert taken["drums"]["drums"] == 100.0 and taken["bass"]["bass"] == 0.0
    # the diagonal is Table 3, with the same tie-breaks, and every row sums to 100
    acc, _ = stem_identification_table(pieces[3.0], "constant", seed=1)
    taken = stem_identification_confusion(pieces[3.0], "constant", seed=1)
    assert {p: taken[p][p] for p in PARTS} == pytest.approx(acc)
    assert all(sum(row.values()) == pytest.approx(100.0) for row in taken.values())


def test_table4_oracle_correlates_perfectly(pieces):
    s3 = pieces[3.0]
    r = stem_mix_correlation(s3, csn_method("s", "oracle", "stem"), csn_method("m", "oracle"))
    assert r == pytest.approx({p: 1.0 for p in PARTS})
    # an embedding unrelated to the audio has no such agreement
    r = stem_mix_correlation(s3, csn_method("s", "oracle", "stem"), csn_method("m", "noise"))
    assert all(abs(v) < 0.3 for v in r.values())


def test_table5_leaky_spaces_are_identical_separate_ones_are_not(pieces):
    s3 = pieces[3.0]
    leak = cross_correlation(s3, csn_method("l", "leaky"))
    assert len(leak) == 10 and all(v == pytest.approx(1.0) for v in leak.values())
    # MFCC-like shared space: every pair is the same matrix
    shared = cross_correlation(s3, shared_method("m", "leaky", standardize=True))
    assert all(v == pytest.approx(1.0) for v in shared.values())


def test_pseudo_plan_is_seeded_and_keeps_tempo_classes(data):
    plan = plan_pseudo_pieces(data.tracks, "drums", n_labels=3, per_label=3, seed=4)
    assert plan == plan_pseudo_pieces(data.tracks, "drums", n_labels=3, per_label=3, seed=4)
    assert plan != plan_pseudo_pieces(data.tracks, "drums", n_labels=3, per_label=3, seed=5)
    assert len(plan) == 9 and len({p.label for p in plan}) == 3
    assert all(p.label != p.other for p in plan)
    assert [p.piece for p in plan] == list(range(9))
    # 8 tracks in 2 tempo classes: three partners of the same class exist for every label
    assert tempo_mismatches(data.tracks, plan) == 0
    # only tracks with piano can be piano labels
    piano = plan_pseudo_pieces(data.tracks, "piano", n_labels=10, per_label=4)
    assert 0 not in {p.label for p in piano} and len({p.label for p in piano}) == 7
    assert tempo_mismatches(data.tracks, piano) > 0  # 4 partners: one must cross classes


def test_mix_pseudo_takes_one_part_from_the_label():
    a = np.ones((5, 10), np.float32)
    b = np.full((5, 8), 2.0, np.float32)
    mix, parts = mix_pseudo(a, b, "bass")
    assert parts.shape == (5, 8) and list(parts[:, 0]) == [2, 1, 2, 2, 2]
    assert mix[0] == 9.0
    assert mix_pseudo(a, b, "bass", max_samples=3)[0].shape == (3,)


def test_table2_separated_oracle_is_perfect_leaky_is_not(data):
    plans = [pp for p in PARTS for pp in plan_pseudo_pieces(data.tracks, p, 4, 3, seed=0)]
    loads = data.loads
    sets = collect_pseudo(data, plans, 3.0, {p: {("oracle", "mix"), ("leaky", "mix")}
                                             for p in PARTS}, FNS, activity=F.activity)
    used = {i for pp in plans for i in (pp.label, pp.other)}
    assert data.loads - loads <= 5 * len(used)  # cached while needed, not once per piece
    assert pseudo_separation(sets, csn_method("o", "oracle")) == {p: 100.0 for p in PARTS}
    leak = pseudo_separation(sets, csn_method("l", "leaky"))
    assert np.mean(list(leak.values())) < 60.0


def test_pseudo_cache_stays_within_its_budget_and_gives_the_same_numbers(data):
    plans = [pp for p in PARTS for pp in plan_pseudo_pieces(data.tracks, p, 4, 2, seed=1)]
    plans = [type(pp)(pp.part, pp.label, pp.other, i) for i, pp in enumerate(plans)]
    jobs = {p: {("oracle", "mix")} for p in PARTS}
    before = data.loads
    roomy = collect_pseudo(data, plans, 3.0, jobs, FNS, activity=F.activity)
    roomy_loads = data.loads - before
    before = data.loads
    tight = collect_pseudo(data, plans, 3.0, jobs, FNS, activity=F.activity, cache_bytes=1)
    assert data.loads - before > roomy_loads  # re-decoded instead of kept
    for p in PARTS:
        assert np.array_equal(roomy[p].emb[("oracle", "mix")], tight[p].emb[("oracle", "mix")])
    capped = collect_pseudo(data, plans, 3.0, jobs, FNS, activity=F.activity, max_seconds=6.0)
    assert all(len(capped[p]) == 2 * sum(pp.part == p for pp in plans) for p in PARTS)


def test_draws_share_pieces_and_draw_zero_is_the_single_plan(data):
    plan = plan_draws(data.tracks, PARTS, 3, 2, seed=4, draws=6)
    assert len(plan.draws) == 6
    single = plan_pseudo_pieces(data.tracks, "bass", 3, 2, seed=4)
    first = [plan.pieces[i] for i in plan.draws[0]["bass"]]
    assert [(p.label, p.other) for p in first] == [(p.label, p.other) for p in single]
    assert [p.piece for p in plan.pieces] == list(range(len(plan.pieces)))
    keys = [(p.part, p.label, p.other) for p in plan.pieces]
    assert len(set(keys)) == len(keys)  # a piece drawn twice is embedded once
    drawn = sum(len(d[p]) for d in plan.draws for p in PARTS)
    assert len(plan.pieces) < drawn  # 8 tracks: the draws overlap
    assert {plan.pieces[i].part for i in plan.draws[3]["drums"]} == {"drums"}
    with pytest.raises(ValueError):
        plan_draws(data.tracks, PARTS, 3, 2, seed=4, draws=0)


def test_table2_over_draws_has_a_spread_that_can_fail(data):
    plan = plan_draws(data.tracks, PARTS, 4, 2, seed=0, draws=8)
    sets = collect_pseudo(data, plan.pieces, 3.0, {p: {("oracle", "mix"), ("noise", "mix")}
                                                   for p in PARTS}, FNS, activity=F.activity)
    exact = pseudo_separation_draws(sets, csn_method("o", "oracle"), plan)
    assert exact == {p: [100.0] * 8 for p in PARTS}  # no spread: every draw is perfect
    noisy = pseudo_separation_draws(sets, csn_method("n", "noise"), plan)
    assert all(len(v) == 8 for v in noisy.values())
    assert np.mean([np.std(v) for v in noisy.values()]) > 1.0  # chance moves from draw to draw
    # draw 0 scores exactly what the single-draw Table 2 scores on the same pieces
    one = {p: segs.subset(np.flatnonzero(np.isin(segs.group, plan.draws[0][p])))
           for p, segs in sets.items()}
    assert pseudo_separation(one, csn_method("n", "noise")) == {p: v[0] for p, v in noisy.items()}


def test_effective_dimension_oracle_constant_and_one_direction(pieces):
    s3 = pieces[3.0]
    # the oracle's subspace is a one-hot of 8 tracks' slots, equally often: 8 - 1 directions
    dims = effective_dimension(s3, csn_method("o", "oracle"))
    assert dims["drums"] == pytest.approx(7.0, rel=1e-6)
    assert dims["piano"] == pytest.approx(6.0, rel=1e-6)  # 7 tracks have a piano
    assert all(np.isnan(v) for v in effective_dimension(s3, csn_method("c", "constant")).values())
    # a random vector per segment spreads over many more directions (32 segments in 128-d)
    assert effective_dimension(s3, csn_method("n", "noise"))["drums"] > 15.0


def test_presence_on_clean_stems_and_mixes(pieces):
    s3 = pieces[3.0]
    st = stem_presence(s3, "oracle")
    assert all(st[p] == {"largest": 100.0, "own": 100.0, "others_absent": 100.0, "accuracy": 100.0}
               for p in PARTS)
    # every subspace equally long: each part is "present" on every stem
    leak = stem_presence(s3, "leaky")
    assert all(leak[p]["own"] == 100.0 and leak[p]["others_absent"] == 0.0 for p in PARTS)
    assert all(leak[p]["accuracy"] == pytest.approx(20.0) for p in PARTS)
    # a bias that puts the threshold above the oracle's unit norms: nothing is heard
    deaf = stem_presence(s3, "oracle", norm_bias=[-1.0] * 5)
    assert all(deaf[p]["own"] == 0.0 for p in PARTS)
    mx = mix_presence(s3, "oracle")
    assert mx["drums"]["accuracy"] == 100.0 and mx["drums"]["recall"] == 100.0
    assert np.isnan(mx["drums"]["false_present"])  # drums are never silent here
    assert mx["piano"]["accuracy"] == 100.0 and mx["piano"]["false_present"] == 0.0


class _Twinned(F.ToneDataset):
    """Tone tracks whose twins play part j of track i at the tone of track ``i + shift``: with
    shift 0 the same sound, otherwise the sound of another track's part."""

    def __init__(self, shift: int, **kw):
        super().__init__(**kw)
        self.shift = shift

    def load_twins(self, i: int) -> dict[int, np.ndarray]:
        other = self.load_parts((i + self.shift) % len(self))
        own = self.load_parts(i)
        return {j: other[j] for j in range(len(PARTS)) if own[j].any()}


def test_table2_across_timbres_takes_every_other_piece_from_the_twin():
    plan = plan_draws(F.ToneDataset(n_tracks=8).tracks, PARTS, 4, 4, seed=0, draws=1).pieces
    jobs = {p: {("oracle", "mix")} for p in PARTS}
    oracle = csn_method("o", "oracle")
    same = _Twinned(0, n_tracks=8)
    plain = collect_pseudo(same, plan, 3.0, jobs, FNS, activity=F.activity)
    alike = collect_pseudo(same, plan, 3.0, jobs, FNS, activity=F.activity, twins=True)
    for p in PARTS:  # a twin that sounds the same changes nothing
        assert np.array_equal(plain[p].emb[("oracle", "mix")], alike[p].emb[("oracle", "mix")])
    # a twin with another sound: an embedding that knows parts only by their sound loses the
    # pieces that hold the twin
    moved = collect_pseudo(_Twinned(3, n_tracks=8), plan, 3.0, jobs, FNS, activity=F.activity, twins=True)
    assert pseudo_separation(plain, oracle) == {p: 100.0 for p in PARTS}
    assert all(v < 90.0 for v in pseudo_separation(moved, oracle).values())
    with pytest.raises(ValueError, match="data twins"):
        collect_pseudo(F.ToneDataset(n_tracks=8), plan, 3.0, jobs, FNS, activity=F.activity, twins=True)
