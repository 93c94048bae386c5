import numpy as np
import pytest
import torch

from model.parts import EMBED_DIM, PARTS, SUBSPACE_DIM
from trainer.content import N_CHROMA, ContentHead, chroma_slices, content_loss

SR = 16000


def _tone(hz: float, seconds: float) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return 0.1 * torch.sin(2 * torch.pi * hz * t)


def test_chroma_names_the_played_pitch_class_in_each_span_and_drops_silent_spans():
    # A4 (440 Hz, class 9), then C4 (261.6 Hz, class 0), then silence, then E3 (164.8 Hz, class 4)
    x = torch.cat([_tone(440.0, 1.0), _tone(261.63, 1.0), torch.zeros(SR), _tone(164.81, 1.0)])
    prof, weight = chroma_slices(x[None], SR, 4, threshold_db=-60.0)
    assert prof.shape == (1, 4, N_CHROMA) and weight.shape == (1, 4)
    assert torch.allclose(prof[0, [0, 1, 3]].sum(-1), torch.ones(3), atol=1e-5)
    assert prof[0, 0].argmax().item() == 9 and prof[0, 0, 9] > 0.6
    assert prof[0, 1].argmax().item() == 0 and prof[0, 1, 0] > 0.6
    assert prof[0, 3].argmax().item() == 4 and prof[0, 3, 4] > 0.6
    assert weight.tolist() == [[1.0, 1.0, 0.0, 1.0]]


def test_chroma_ignores_octave_and_level():
    a, _ = chroma_slices(_tone(220.0, 2.0)[None], SR, 2, threshold_db=-60.0)
    b, _ = chroma_slices(0.05 * _tone(880.0, 2.0)[None], SR, 2, threshold_db=-60.0)
    assert a[0, 0].argmax() == b[0, 0].argmax() == 9


def test_content_loss_is_zero_at_the_target_positive_elsewhere_and_masked_by_weight():
    torch.manual_seed(0)
    target = torch.softmax(torch.randn(3, 2, N_CHROMA), -1)
    weight = torch.ones(3, 2)
    assert content_loss(target.log(), target, weight).item() == pytest.approx(0.0, abs=1e-6)
    assert content_loss(target.log() + 5.0, target, weight).item() == pytest.approx(0.0, abs=1e-5)
    wrong = torch.zeros(3, 2, N_CHROMA)  # uniform predictions
    by_hand = (target * (target.log() - np.log(1 / N_CHROMA))).sum(-1)  # KL per span
    assert content_loss(wrong, target, weight).item() == pytest.approx(by_hand.mean().item(), rel=1e-5)
    # a span of weight 0 counts for nothing; no span at all gives 0
    weight[0, 1] = 0.0
    keep = by_hand.flatten()[torch.tensor([0, 2, 3, 4, 5])]
    assert content_loss(wrong, target, weight).item() == pytest.approx(keep.mean().item(), rel=1e-5)
    assert content_loss(wrong, target, torch.zeros(3, 2)).item() == 0.0


def test_the_head_starts_uniform_and_reads_each_named_part_from_its_own_subspace_only():
    head = ContentHead(("bass", "piano"), slices=3)
    emb = torch.randn(4, EMBED_DIM, requires_grad=True)
    out = head(emb)
    assert set(out) == {"bass", "piano"} and out["piano"].shape == (4, 3, N_CHROMA)
    # from zero: uniform predictions, and no gradient into the subspaces at the first step
    assert torch.all(out["piano"] == 0)
    out["piano"].sum().backward()
    assert torch.all(emb.grad == 0)
    emb.grad = None
    torch.nn.init.normal_(head.heads["piano"].weight)
    out = head(emb)
    out["piano"].sum().backward()
    grad = emb.grad.reshape(4, len(PARTS), SUBSPACE_DIM).abs().sum((0, 2))
    assert grad[PARTS.index("piano")] > 0
    assert all(grad[j] == 0 for j in range(len(PARTS)) if PARTS[j] != "piano")
    with pytest.raises(ValueError, match="content parts"):
        ContentHead(("flute",), slices=2)


def test_a_held_read_out_stays_orthonormal_and_its_logits_are_bounded_by_the_subspace_length():
    torch.manual_seed(0)
    head = ContentHead(("piano",), slices=4, temperature=0.1)
    w = head.heads["piano"].weight
    assert w.shape == (4 * N_CHROMA, SUBSPACE_DIM)
    torch.testing.assert_close(w @ w.T, torch.eye(4 * N_CHROMA), atol=1e-5, rtol=0)
    emb = torch.randn(6, EMBED_DIM)
    sub = emb.reshape(6, len(PARTS), SUBSPACE_DIM)[:, PARTS.index("piano")]
    logits = head(emb)["piano"]
    torch.testing.assert_close(logits.reshape(6, -1), sub @ w.T / 0.1)
    # the logits' length is at most the subspace's length over T: confidence costs length
    assert torch.all(logits.reshape(6, -1).norm(dim=1) <= sub.norm(dim=1) / 0.1 + 1e-4)
    # a training step turns the rows and keeps them orthonormal
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    target = torch.softmax(torch.randn(6, 4, N_CHROMA), -1)
    before = head.heads["piano"].weight.detach().clone()
    content_loss(head(emb)["piano"], target, torch.ones(6, 4)).backward()
    opt.step()
    w = head.heads["piano"].weight
    assert not torch.allclose(w, before)
    torch.testing.assert_close(w @ w.T, torch.eye(4 * N_CHROMA), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="slices x 12"):
        ContentHead(("piano",), slices=11, temperature=0.1)  # 132 rows cannot be orthonormal in 128
    with pytest.raises(ValueError, match="temperature"):
        ContentHead(("piano",), slices=2, temperature=-1.0)
