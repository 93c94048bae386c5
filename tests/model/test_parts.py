import numpy as np
import pytest
import torch

from model.parts import (
    EMBED_DIM,
    PARTS,
    is_present,
    mask,
    masks,
    part_norms,
    part_slice,
    part_sq_distances,
    presence,
    presence_logits,
    split,
    stack_parts,
)


def test_part_order_and_sizes():
    assert PARTS == ("drums", "bass", "piano", "guitar", "others")
    assert EMBED_DIM == 640
    assert part_slice("bass") == slice(128, 256)
    assert part_slice("others") == slice(512, 640)


def test_masks_zero_exactly_the_other_four():
    m = masks()
    assert m.shape == (5, 640)
    for c in range(5):
        on = torch.zeros(640)
        on[c * 128:(c + 1) * 128] = 1
        assert torch.equal(m[c], on)
        assert torch.equal(mask(PARTS[c]), on)
    x = torch.randn(640)
    kept = x * mask("piano")
    assert torch.equal(kept[256:384], x[256:384])
    assert kept[:256].abs().sum() == 0 and kept[384:].abs().sum() == 0


def test_split_and_norms_numpy_and_torch():
    e = np.arange(2 * 640, dtype=np.float32).reshape(2, 640)
    parts = split(e)
    assert list(parts) == list(PARTS)
    assert np.array_equal(parts["guitar"], e[:, 384:512])
    assert stack_parts(e).shape == (2, 5, 128)
    n = part_norms(e)
    assert n.shape == (2, 5)
    assert np.allclose(n[1, 2], np.linalg.norm(e[1, 256:384]))
    assert torch.allclose(part_norms(torch.from_numpy(e)), torch.from_numpy(n))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown part"):
        part_slice("vocals")
    with pytest.raises(ValueError, match="640"):
        split(np.zeros(10))


def test_part_sq_distances_one_query_and_many():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, EMBED_DIM)).astype(np.float32)
    x = rng.normal(size=(7, EMBED_DIM)).astype(np.float32)
    ref = ((x[None] - q[:, None]).reshape(3, 7, 5, 128) ** 2).sum(-1)
    np.testing.assert_allclose(part_sq_distances(q, x), ref, rtol=1e-4)
    np.testing.assert_allclose(part_sq_distances(q[1], x), ref[1], rtol=1e-4)
    own = part_sq_distances(x[2], x)[2]  # itself: round-off only, clamped at 0
    assert (own >= 0).all() and (own < 1e-3).all()


def test_presence_with_and_without_the_cards_biases():
    v = np.zeros(EMBED_DIM, np.float32)
    v[0], v[128] = 2.0, 1.0
    np.testing.assert_allclose(presence(v), [1, 0.5, 0, 0, 0])
    b = np.array([0.5, -1.0, 0.0, 2.0, 1.0])
    got = presence(np.stack([v, 2 * v]), b)
    expect = 1 / (1 + np.exp(-(np.log(part_norms(v) + 1e-6) + b)))
    np.testing.assert_allclose(got[0], expect, rtol=1e-5)
    assert (got[1] >= got[0]).all()


def test_presence_has_one_rule_for_training_the_app_and_the_evaluation():
    from model.losses import NormLoss

    rng = np.random.default_rng(1)
    v = rng.normal(0, 0.05, (6, EMBED_DIM)).astype(np.float32)
    v[:, 128:256] *= 40  # bass loud, the rest quiet
    b = np.array([1.0, -0.5, 2.0, 0.0, 3.5])
    loss = NormLoss()
    with torch.no_grad():
        loss.bias.copy_(torch.tensor(b, dtype=torch.float32))
        trained = loss.logits(torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(trained, presence_logits(v, b), rtol=1e-5, atol=1e-5)
    decided = is_present(v, b)
    assert decided.tolist() == (trained > 0).tolist()
    assert decided.tolist() == (presence(v, b) > 0.5).tolist()
    assert decided[:, 1].all() and decided.any(axis=1).all() and not decided.all()
    # without biases: relative to the loudest part of each row
    assert is_present(v).tolist() == (presence(v) >= 0.5).tolist()
    assert is_present(v)[:, 1].all()
