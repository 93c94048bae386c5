import numpy as np
import pytest
import torch

from trainer.augment import SILENCE, SpecMasks, mask_spectrogram
from trainer.config import resolve


def _runs(row: np.ndarray) -> list[int]:
    """Widths of the runs of True in a 1-d bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
    return list(edges[1::2] - edges[::2])


def test_masks_silence_spans_no_wider_than_asked_and_leave_the_rest():
    mel = torch.rand(64, 128, 157) + 1.0  # no cell is silent before
    out = mask_spectrogram(mel, np.random.default_rng(0), SpecMasks(2, 12, 2, 0.1))
    silent = (out == SILENCE).numpy()
    assert torch.equal(out[~torch.from_numpy(silent)], mel[~torch.from_numpy(silent)])
    assert (mel > 1.0).all()  # the input is untouched
    bands = silent.all(axis=2)  # a band masked across every frame
    frames = silent.all(axis=1)
    for b, f in zip(bands, frames, strict=True):
        assert len(_runs(b)) <= 2 and all(w <= 2 * 12 for w in _runs(b))  # two spans may touch
        assert len(_runs(f)) <= 2 and all(w <= 2 * 15 for w in _runs(f))  # 10 % of 157 frames
        assert not b.all() and not f.all()
    # every silent cell lies in a masked band or a masked frame
    assert (silent == (bands[:, :, None] | frames[:, None, :])).all()
    # the rows differ, and on average about what the widths say is silenced (up to 18 %)
    share = silent.mean(axis=(1, 2))
    assert share.std() > 0.01 and 0.08 < share.mean() < 0.25


def test_masks_follow_the_generator_and_cover_both_channels():
    mel = torch.rand(8, 2, 64, 40)
    masks = SpecMasks(1, 8, 1, 0.2)
    a = mask_spectrogram(mel, np.random.default_rng(5), masks)
    b = mask_spectrogram(mel, np.random.default_rng(5), masks)
    assert torch.equal(a, b)
    assert torch.equal(a[:, 0] == SILENCE, a[:, 1] == SILENCE)
    assert (a == SILENCE).any()


def test_no_masks_is_the_spectrogram_itself():
    mel = torch.rand(3, 16, 10)
    assert mask_spectrogram(mel, np.random.default_rng(0), SpecMasks()) is mel
    assert not resolve("smoke", []).spec_masks().on


@pytest.mark.parametrize("bad", [["mask_freq=-1"], ["mask_freq=2", "mask_bands=0"],
                                 ["mask_time=1", "mask_time_share=1.5"],
                                 ["mask_time=1", "mask_time_share=0"],
                                 ["mask_time=1", "mask_time_share=nan"]])
def test_bad_masks_are_refused(bad):
    with pytest.raises(ValueError, match="mask"):
        resolve("smoke", bad)
