import pytest

from model.parts import PARTS
from tests.trainer import evalfakes as F
from trainer.evaluate import music_id_knn, pseudo_piece_knn, stem_identification


@pytest.fixture(scope="module")
def data():
    return F.ToneDataset(n_tracks=6, seconds=9.0, absent={(0, 4)})


def test_fast_checks_score_the_oracle_perfectly(data):
    kw = dict(activity=F.activity)
    assert pseudo_piece_knn(data, F.oracle, n_labels=3, per_label=2, **kw) == {
        p: 100.0 for p in PARTS}
    assert stem_identification(data, F.oracle, **kw) == {p: 100.0 for p in PARTS}
    assert music_id_knn(data, F.oracle, **kw) == {p: 100.0 for p in PARTS}


def test_fast_checks_separate_good_from_bad_and_repeat(data):
    kw = dict(activity=F.activity)
    leak = pseudo_piece_knn(data, F.leaky, n_labels=3, per_label=2, seed=1, **kw)
    assert sum(leak.values()) / 5 < 70.0
    assert leak == pseudo_piece_knn(data, F.leaky, n_labels=3, per_label=2, seed=1, **kw)
    const = stem_identification(data, F.constant, seed=2, **kw)
    assert sum(const.values()) / 5 < 50.0


def test_subsets_are_seeded(data):
    kw = dict(activity=F.activity)
    a = music_id_knn(data, F.noise, max_tracks=4, max_segments=2, seed=5, **kw)
    assert a == music_id_knn(data, F.noise, max_tracks=4, max_segments=2, seed=5, **kw)
    part = pseudo_piece_knn(data, F.oracle, n_labels=2, per_label=2, parts=("bass",), **kw)
    assert part == {"bass": 100.0}


def test_separation_with_its_error_takes_every_pair_on_a_split_too_small_for_draws(data):
    from trainer.evaluate import pseudo_piece_spread
    kw = dict(activity=F.activity)
    # six tracks, ten labels asked: every draw would hold every label, so every pair is taken
    plan, oracle = pseudo_piece_spread(data, F.oracle, n_labels=10, **kw)
    assert plan == "every"
    assert all(oracle[p]["mean"] == 100.0 and oracle[p]["std"] == 0.0 for p in PARTS)
    # every track with the part is a label (track 0 has no others)
    assert oracle["others"]["n"] == 5 and oracle["bass"]["n"] == 6
    plan, leak = pseudo_piece_spread(data, F.leaky, n_labels=10, seed=1, **kw)
    assert plan == "every" and sum(s["mean"] for s in leak.values()) / 5 < 70.0
    # a figure that varies from label to label has an error
    _, noise = pseudo_piece_spread(data, F.noise, n_labels=10, **kw)
    assert all(s["std"] > 0.0 and s["min"] < s["max"] for s in noise.values())
    # fewer labels than tracks: seeded draws, their mean the fast check's
    plan, drawn = pseudo_piece_spread(data, F.leaky, n_labels=3, per_label=2, seed=1, draws=3, **kw)
    assert plan == "drawn"
    mean = pseudo_piece_knn(data, F.leaky, n_labels=3, per_label=2, seed=1, draws=3, **kw)
    assert {p: s["mean"] for p, s in drawn.items()} == pytest.approx(mean)
    # the plan can be asked for
    assert pseudo_piece_spread(data, F.oracle, n_labels=10, plan="drawn", **kw)[0] == "drawn"
