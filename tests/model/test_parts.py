import numpy as np
import pytest
import torch

from model.parts import EMBED_DIM, PARTS, mask, masks, part_norms, part_slice, split, stack_parts


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
