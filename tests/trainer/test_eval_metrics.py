import numpy as np
import pytest

from trainer.evaluate.metrics import (
    knn_accuracy,
    knn_predict,
    largest_norm_predict,
    matrix_correlation,
)


def test_knn_finds_clusters_and_leaves_the_target_out():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 8)) * 10
    labels = np.repeat(np.arange(4), 6)
    x = centers[labels] + rng.normal(size=(24, 8)) * 0.1
    assert knn_accuracy(x, labels) == 100.0
    # one segment per label: the target is excluded, so nothing of its own label can vote
    single = np.arange(4)
    assert knn_accuracy(centers, single, k=1) == 0.0


def test_groups_leave_out_the_whole_piece():
    # two pieces of label 0 far apart, each tight: with its own piece excluded, a target's
    # nearest references are the other label's piece, unless the other piece of its label wins
    x = np.array([[0.0], [0.1], [10.0], [10.1], [0.05], [0.06]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    groups = np.array([0, 0, 1, 1, 2, 2])
    pred = knn_predict(x, labels, groups, k=1)
    assert pred[0] == 2 and pred[4] == 0  # their own piece is not allowed to vote
    assert knn_predict(x, labels, None, k=1)[0] == 2  # 0.05 is nearer than 0.1


def test_vote_tie_goes_to_the_nearest_label():
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    labels = np.array([9, 1, 2, 2, 1])
    # neighbours of 0: 1 (label 1), 2 (label 2), 3 (2), 4 (1) -> 2:2 tie, label 1 is nearest
    assert knn_predict(x, labels, k=4)[0] == 1


def test_constant_embedding_scores_chance_not_the_first_track():
    labels = np.repeat(np.arange(10), 20)
    x = np.zeros((200, 4))
    acc = knn_accuracy(x, labels, seed=3)
    assert 2.0 < acc < 25.0
    assert acc == knn_accuracy(x, labels, seed=3)  # seeded: same numbers


def test_fewer_references_than_k_and_none_at_all():
    x = np.array([[0.0], [1.0]])
    assert list(knn_predict(x, np.array([0, 0]), k=5)) == [0, 0]
    assert list(knn_predict(x, np.array([0, 1]), np.array([0, 0]), k=5)) == [-1, -1]
    assert np.isnan(knn_accuracy(np.zeros((0, 3)), np.zeros(0)))


def test_largest_norm_and_its_ties():
    emb = np.zeros((3, 640), np.float32)
    emb[0, 130] = 5.0  # bass
    emb[1, 600] = 1.0  # others
    pred = largest_norm_predict(emb, seed=0)
    assert pred[0] == 1 and pred[1] == 4
    many = largest_norm_predict(np.zeros((500, 640)), seed=1)
    counts = np.bincount(many, minlength=5)
    assert counts.min() > 60  # ties spread over all five parts


def test_matrix_correlation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 5))
    assert matrix_correlation(a, a * 3 + 1) == pytest.approx(1.0)
    assert abs(matrix_correlation(a, rng.normal(size=(30, 7)))) < 0.3
    assert np.isnan(matrix_correlation(np.ones((5, 2)), a[:5]))
    with pytest.raises(ValueError):
        matrix_correlation(a, a[:3])


def test_participation_ratio_of_known_clouds():
    from trainer.evaluate.metrics import participation_ratio

    rng = np.random.default_rng(0)
    # isotropic in 128-d: near 128 (the sample covariance of N rows loses a little: D / (1 + D/N))
    iso = rng.normal(size=(20000, 128))
    assert 120.0 < participation_ratio(iso) <= 128.0
    # rank 1: every vector on one line, whatever its length (a loudness-like number)
    line = rng.normal(size=(500, 1)) * rng.normal(size=(1, 128))
    assert participation_ratio(line) == pytest.approx(1.0, abs=1e-6)
    # k equal directions -> k, unequal variances -> fewer; the scale does not matter
    four = np.zeros((4000, 128))
    four[:, :4] = rng.choice([-1.0, 1.0], size=(4000, 4))
    assert participation_ratio(four) == pytest.approx(4.0, rel=0.02)
    assert participation_ratio(1e-3 * four) == pytest.approx(participation_ratio(four))
    skew = four * np.array([1.0, 1.0, 0.1, 0.1] + [0.0] * 124)
    assert participation_ratio(skew) == pytest.approx(2.0, rel=0.03)
    # a mean offset is not a direction of variance
    assert participation_ratio(line + 5.0) == pytest.approx(1.0, abs=1e-6)
    # nothing to measure
    assert np.isnan(participation_ratio(np.ones((10, 128))))
    assert np.isnan(participation_ratio(np.zeros((1, 128))))


def test_spread_over_draws():
    from trainer.evaluate.metrics import spread

    s = spread([10.0, 20.0, 30.0, float("nan")])
    assert s == {"mean": 20.0, "std": pytest.approx(np.sqrt(200 / 3)), "min": 10.0, "max": 30.0,
                 "n": 3}
    assert spread([5.0])["std"] == 0.0
    assert np.isnan(spread([])["mean"]) and spread([])["n"] == 0


def test_spread_over_label_tracks():
    from trainer.evaluate.metrics import label_spread

    # three labels: 8/10, 3/10, 9/20 -> 20/40 overall; residuals 3, -2, -1 segments
    s = label_spread({1: [8, 10], 2: [3, 10], 3: [9, 20], 4: [0, 0]})
    assert s["mean"] == 50.0 and s["n"] == 3 and s["min"] == 30.0 and s["max"] == 80.0
    assert s["std"] == pytest.approx(100 * np.sqrt(3 / 2 * (9 + 4 + 1)) / 40)
    assert label_spread({1: [8, 10], 2: [4, 5]})["std"] == 0.0  # every label at the same rate
    assert np.isnan(label_spread({1: [3, 4]})["std"]) and np.isnan(label_spread({})["mean"])


def test_presence_with_and_without_norm_biases():
    from trainer.evaluate.metrics import presence_predict

    emb = np.zeros((2, 640), np.float32)
    emb[0, 0] = 2.0      # drums norm 2
    emb[0, 128] = 0.5    # bass norm 0.5
    emb[1, 256] = 0.05   # piano norm 0.05
    # without biases: at least half of the row's largest norm
    assert presence_predict(emb).tolist() == [[True, False, False, False, False],
                                              [False, False, True, False, False]]
    # with biases: present when the norm exceeds exp(-b)
    b = [0.0, 1.0, 0.0, 0.0, 0.0]  # bass threshold exp(-1) = 0.37 < 0.5
    assert presence_predict(emb, b)[0].tolist() == [True, True, False, False, False]
    assert presence_predict(emb, b)[1].tolist() == [False] * 5  # 0.05 < exp(0) = 1
