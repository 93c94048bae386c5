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
