import math

import pytest
import torch

from model.losses import (
    NormLoss,
    ScatterMemory,
    invariance_loss,
    masked_distance,
    masked_triplet_loss,
    nuisance_leak,
    pretrain_loss,
    pretrain_target,
    solo_id_loss,
    spread_loss,
    stem_loss,
)


def _vec(**blocks):
    """A 640-d vector with constant values per named block: _vec(bass=1.0)."""
    order = ["drums", "bass", "piano", "guitar", "others"]
    v = torch.zeros(640)
    for name, val in blocks.items():
        i = order.index(name)
        v[i * 128:(i + 1) * 128] = val
    return v


def test_masked_distance_by_hand():
    a = _vec(drums=1.0, bass=0.0)
    b = _vec(drums=0.5, bass=3.0)
    # under the drums mask only the drums block counts: sqrt(128 * 0.5^2)
    d = masked_distance(a[None], b[None], torch.tensor([0]))
    assert math.isclose(d.item(), math.sqrt(128 * 0.25), rel_tol=1e-6)
    d_bass = masked_distance(a[None], b[None], torch.tensor([1]))
    assert math.isclose(d_bass.item(), math.sqrt(128 * 9.0), rel_tol=1e-6)


def test_masked_triplet_loss_by_hand():
    s = 1 / math.sqrt(128)  # a block of value s has norm 1
    a = _vec(bass=0.0, drums=5.0)
    p = _vec(bass=0.3 * s, drums=-5.0)  # far in drums, but drums is masked away
    n = _vec(bass=0.4 * s)
    cond = torch.tensor([1])
    # d(a,p) = 0.3, d(a,n) = 0.4 -> max(0.3 - 0.4 + 0.2, 0) = 0.1
    loss = masked_triplet_loss(a[None], p[None], n[None], cond)
    assert math.isclose(loss.item(), 0.1, rel_tol=1e-5)
    # a satisfied triplet costs nothing; batch mean of 0.1 and 0 is 0.05
    n2 = _vec(bass=1.0 * s)
    batch = masked_triplet_loss(torch.stack([a, a]), torch.stack([p, p]), torch.stack([n, n2]),
                                torch.tensor([1, 1]))
    assert math.isclose(batch.item(), 0.05, rel_tol=1e-5)


def test_norm_loss_by_hand():
    s = 1 / math.sqrt(128)
    emb = _vec(drums=2 * s, bass=0.5 * s, piano=1 * s, guitar=1 * s, others=1 * s)[None]
    present = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0]])
    loss_fn = NormLoss()
    with torch.no_grad():
        loss_fn.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]))
    # p_j = sigmoid(log ||.|| + b_j): norms 2, 0.5, 1, 1, 1
    p = [2 / 3, 1 / 3, 0.5, 1 / (1 + math.exp(-1)), 0.5]
    q = [1, 0, 1, 0, 1]
    expected = -sum(qj * math.log(pj) + (1 - qj) * math.log(1 - pj) for pj, qj in zip(p, q, strict=True)) / 5
    assert math.isclose(loss_fn(emb, present).item(), expected, rel_tol=1e-5)


def test_norm_loss_pushes_absent_part_to_zero():
    torch.manual_seed(0)
    present = (torch.rand(128, 5) > 0.5).float()
    x = torch.cat([torch.randn(128, 11), present], dim=1)  # the net may see what is present
    net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 640))
    loss_fn = NormLoss()
    opt = torch.optim.Adam(list(net.parameters()) + list(loss_fn.parameters()), lr=1e-2)

    def block_norms():
        with torch.no_grad():
            n = net(x).reshape(128, 5, 128).norm(dim=-1)
        return n[present == 0].mean().item(), n[present == 1].mean().item()

    absent_before, _ = block_norms()
    for _ in range(150):
        opt.zero_grad()
        loss_fn(net(x), present).backward()
        opt.step()
    absent_after, present_after = block_norms()
    assert absent_after < 0.1 * absent_before
    assert present_after > 10 * absent_after


def test_pretrain_target_zeroes_silent_blocks_and_normalizes():
    ind = torch.ones(2, 5, 128)
    present = torch.tensor([[1, 0, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.float32)
    y = pretrain_target(ind, present)
    assert y.shape == (2, 640)
    assert math.isclose(y[0].norm().item(), 1.0, rel_tol=1e-6)
    assert y[0, 128:256].abs().sum() == 0
    assert y[1].abs().sum() == 0
    assert math.isclose(pretrain_loss(y, y).item(), 0.0)
    assert math.isclose(pretrain_loss(torch.zeros(1, 640), torch.ones(1, 640)).item(), 1.0)


def _participation_ratio(x: torch.Tensor) -> float:
    ev = torch.linalg.svdvals(x - x.mean(0)) ** 2
    return float(ev.sum() ** 2 / (ev ** 2).sum())


def test_centred_pretrain_targets_keep_their_directions():
    # individual nets whose outputs sit far from the origin (mean 50x the spread), as small
    # triplet-trained nets' do; parts fall silent at random, as in pre-training
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(5, 128, generator=g) * 5.0
    outs = mean + 0.1 * torch.randn(2000, 5, 128, generator=g)
    present = (torch.rand(2000, 5, generator=g) < 0.6).float()
    present[:, 0] = 1.0
    plain = pretrain_target(outs, present)[:, :128]
    centred = pretrain_target(outs, present, center=mean)[:, :128]
    # the plain target block is one direction scaled by which other parts sound
    assert _participation_ratio(plain) < 1.1
    # centred, it spreads over many directions (isotropic spread: close to 128)
    assert _participation_ratio(centred) > 50.0
    # still unit length, silent blocks still zero
    assert torch.allclose(centred.new_tensor(1.0), pretrain_target(outs, present, mean)[0].norm())
    silent = pretrain_target(outs, present, mean)[present[:, 1] == 0][:, 128:256]
    assert torch.count_nonzero(silent) == 0


def test_block_normalised_targets_say_presence_by_their_norms():
    """Centred blocks vary in length, so their norms stop telling sounding parts from silent
    ones; block-normalised, every sounding block has norm 1/sqrt(k) and keeps its directions."""
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(5, 128, generator=g) * 5.0
    # spreads differ per stem: some stems sit near their net's mean output
    outs = mean + (0.05 + torch.rand(3000, 5, 1, generator=g)) ** 2 * torch.randn(3000, 5, 128, generator=g)
    present = (torch.rand(3000, 5, generator=g) < 0.6).float()
    present[present.sum(1) == 0, 0] = 1.0
    centred = pretrain_target(outs, present, center=mean)
    blocked = pretrain_target(outs, present, center=mean, block_norm=True)
    k = present.sum(1)
    norms_c = centred.reshape(-1, 5, 128).norm(dim=-1)
    norms_b = blocked.reshape(-1, 5, 128).norm(dim=-1)
    sounding = present > 0
    # centred: some sounding blocks are 2 % of the target's length, nearly as short as silence
    assert norms_c[sounding].min() < 0.02
    # block-normalised: exactly 1/sqrt(k) for sounding parts, 0 for silent ones
    assert torch.allclose(norms_b[sounding], (1 / k.sqrt()).unsqueeze(1).expand_as(norms_b)[sounding], atol=1e-5)
    assert torch.count_nonzero(norms_b[~sounding]) == 0
    assert _participation_ratio(blocked[present[:, 0] > 0][:, :128]) > 50.0


def test_spread_loss_is_one_for_a_collapsed_subspace_and_scale_free():
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(400, 640, generator=g)
    present = torch.ones(400, 5)
    # 400 isotropic rows: PR near 128 * 400 / 528 = 97, loss 1 - log(97) / log(128) = 0.06
    assert spread_loss(iso, present).item() < 0.1
    line = torch.rand(400, 1, generator=g) * torch.randn(1, 640, generator=g)
    assert math.isclose(spread_loss(line, present).item(), 1.0, abs_tol=1e-4)
    assert math.isclose(spread_loss(3.0 * iso, present).item(), spread_loss(iso, present).item(),
                        rel_tol=1e-4)
    # only rows where the part is present count; a part present in too few rows is skipped
    mixed = iso.clone()
    mixed[:200, 128:256] = line[:200, 128:256]
    bass_only = torch.zeros(400, 5)
    bass_only[:200, 1] = 1
    assert math.isclose(spread_loss(mixed, bass_only).item(), 1.0, abs_tol=1e-4)
    bass_only[200:, 1] = 1
    assert spread_loss(mixed, bass_only).item() < 0.9
    assert spread_loss(iso, torch.zeros(400, 5)).item() == 0.0
    # its gradient turns a collapsed subspace's rows, not their length alone
    x = (line + 0.01 * torch.randn(400, 640, generator=g)).requires_grad_(True)
    spread_loss(x, present).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_spread_floor_pushes_only_the_subspaces_under_it():
    g = torch.Generator().manual_seed(1)
    present = torch.ones(400, 5)
    x = torch.randn(400, 640, generator=g)
    # drums on a line (PR 1), bass in 3 directions, the rest isotropic (PR near 97)
    x[:, :128] = torch.rand(400, 1, generator=g) * torch.randn(1, 128, generator=g)
    x[:, 128:256] = torch.randn(400, 3, generator=g) @ torch.randn(3, 128, generator=g)
    x += 1e-3 * torch.randn(400, 640, generator=g)
    x.requires_grad_(True)
    loss = spread_loss(x, present, floor=8.0)
    # drums: 1 - log(1) / log(8) = 1; bass: 1 - log(PR <= 3) / log(8) >= 0.47; the rest 0
    assert 0.29 < loss.item() < 0.4
    loss.backward()
    grad = x.grad.reshape(400, 5, 128).abs().sum(dim=(0, 2))
    assert grad[0] > 0 and grad[1] > 0 and torch.all(grad[2:] == 0)
    # above the floor everywhere: nothing to push
    assert spread_loss(torch.randn(400, 640, generator=g), present, floor=8.0).item() == 0.0


def test_between_part_spread_counts_only_directions_that_tell_parts_apart():
    g = torch.Generator().manual_seed(2)
    n_labels, per = 40, 4
    labels = torch.arange(n_labels).repeat_interleave(per).reshape(-1, 1).repeat(1, 5)
    present = torch.ones(len(labels), 5)

    def rows(k_part: int, context: float) -> torch.Tensor:
        # each label's part vector spans k_part directions; every row adds its own context
        # (what the rest of its mix puts in the subspace) over 50 other directions
        part = torch.randn(n_labels, k_part, generator=g) @ torch.randn(k_part, 128, generator=g)
        ctx = torch.randn(len(labels), 50, generator=g) @ torch.randn(50, 128, generator=g)
        return (part.repeat_interleave(per, dim=0) + context * ctx).repeat(1, 5)

    # the part on one line, the context spread wide: the raw subspace looks spread, the
    # between-part scatter does not
    line = rows(1, 0.3)
    assert spread_loss(line, present, floor=8.0).item() == 0.0
    assert spread_loss(line, present, floor=8.0, labels=labels).item() > 0.7
    # the part itself over 24 directions: nothing to push, context or not
    wide = rows(24, 0.3)
    assert spread_loss(wide, present, floor=8.0, labels=labels).item() == 0.0
    # rows whose part is not mixed in (label -1) are left out; too few pairs: the part is skipped
    alone = labels.clone()
    alone[:, 0] = torch.arange(len(labels))  # no two rows share drums
    loss = spread_loss(line, present, floor=8.0, labels=alone)
    assert math.isclose(loss.item(), spread_loss(line, present, floor=8.0, labels=labels).item(), rel_tol=1e-5)
    # the gradient reaches the collapsed subspace
    x = line.clone().requires_grad_(True)
    spread_loss(x, present, floor=8.0, labels=labels).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_scatter_memory_pools_the_value_and_keeps_the_steps_gradient():
    g = torch.Generator().manual_seed(5)
    mem = ScatterMemory(0.5)
    a, b = torch.randn(6, 3, generator=g), torch.randn(4, 3, generator=g)
    first = mem.blend("k", a.T @ a, 6)
    assert torch.allclose(first, a.T @ a / 6)
    x = b.clone().requires_grad_(True)
    second = mem.blend("k", x.T @ x, 4)
    # value: the decayed sum over the decayed count, by hand
    assert torch.allclose(second, (b.T @ b + 0.5 * a.T @ a) / (4 + 0.5 * 6), atol=1e-6)
    # gradient: that of the step's own mean
    w = torch.randn(3, 3, generator=g)
    (second * w).sum().backward()
    y = b.clone().requires_grad_(True)
    ((y.T @ y / 4) * w).sum().backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-6)
    # keys pool apart; momentum 0 is the step alone
    assert torch.allclose(mem.blend("other", b.T @ b, 4), b.T @ b / 4)
    assert torch.allclose(ScatterMemory(0.0).blend("k", a.T @ a, 6), a.T @ a / 6)
    with pytest.raises(ValueError, match="momentum"):
        ScatterMemory(1.0)


def test_pooled_between_part_spread_holds_still_where_one_steps_pairs_jump():
    g = torch.Generator().manual_seed(3)
    part_dirs, ctx_dirs = torch.randn(10, 128, generator=g), torch.randn(50, 128, generator=g)

    def batch(n_labels: int, per: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n_labels).repeat_interleave(per).reshape(-1, 1).repeat(1, 5)
        part = (torch.randn(n_labels, 10, generator=g) @ part_dirs).repeat_interleave(per, dim=0)
        ctx = 0.3 * torch.randn(n_labels * per, 50, generator=g) @ ctx_dirs
        return (part + ctx).repeat(1, 5), labels

    big, big_labels = batch(2000)
    truth = spread_loss(big, torch.ones(len(big), 5), floor=64.0, labels=big_labels).item()
    assert 0.2 < truth < 0.8
    errors = {0.0: [], 0.95: []}
    for momentum in errors:
        mem = ScatterMemory(momentum) if momentum else None
        for step in range(120):
            x, labels = batch(15)  # a step's some fifteen pairs
            value = spread_loss(x, torch.ones(len(x), 5), floor=64.0, labels=labels, memory=mem).item()
            if step >= 60:
                errors[momentum].append(abs(value - truth))
    one, pooled = sum(errors[0.0]) / 60, sum(errors[0.95]) / 60
    assert pooled < 0.3 * one, (one, pooled)
    # without memory the term is exactly the step's own
    x, labels = batch(15)
    assert spread_loss(x, torch.ones(len(x), 5), floor=64.0, labels=labels,
                       memory=ScatterMemory(0.0)).item() == pytest.approx(
        spread_loss(x, torch.ones(len(x), 5), floor=64.0, labels=labels).item(), rel=1e-5)


def test_pretrain_block_loss_learns_direction_and_length_part_by_part():
    from model.losses import block_cosine, pretrain_block_loss

    torch.manual_seed(0)
    target = torch.randn(4, 640)
    present = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    target = target * present.repeat_interleave(128, dim=1)  # silent parts: zero blocks
    assert math.isclose(pretrain_block_loss(target, target, present).item(), 0.0, abs_tol=1e-6)
    assert math.isclose(block_cosine(target, target, present), 1.0, abs_tol=1e-6)
    # a longer copy in the right directions costs only its lengths
    assert pretrain_block_loss(2 * target, target, present).item() > 0.1
    assert math.isclose(block_cosine(2 * target, target, present), 1.0, abs_tol=1e-6)
    # a silent part that answers is penalised by its length, not its direction
    loud = target.clone()
    loud[1, 128:256] = 1.0
    assert pretrain_block_loss(loud, target, present).item() > 0.0
    assert math.isclose(block_cosine(loud, target, present), 1.0, abs_tol=1e-6)
    # the opposite direction costs 2 a sounding part
    assert math.isclose(pretrain_block_loss(-target, target, present).item(), 2.0, rel_tol=1e-5)


def test_part_contrast_loss_by_hand_and_part_by_part():
    from model.losses import part_contrast_loss

    # bass subspace: rows 0 and 1 share a source, row 2 another; two unit directions
    e0, e1 = torch.zeros(128), torch.zeros(128)
    e0[0], e1[1] = 1.0, 1.0
    emb = torch.zeros(3, 640)
    emb[0, 128:256], emb[1, 128:256], emb[2, 128:256] = e0, e0, e1
    labels = torch.full((3, 5), -1)
    labels[:, 1] = torch.tensor([7, 7, 9])
    present = torch.zeros(3, 5)
    present[:, 1] = 1
    # rows 0 and 1 each: -log(e^1 / (e^1 + e^0)) at tau 1; row 2 has no positive and is skipped
    want = -math.log(math.e / (math.e + 1))
    got = part_contrast_loss(emb, labels, present, tau=1.0)
    assert math.isclose(got.item(), want, rel_tol=1e-5)
    # the same pieces with the shared source on different directions cost far more
    swapped = emb.clone()
    swapped[1, 128:256] = e1
    assert part_contrast_loss(swapped, labels, present, tau=1.0).item() > 1.0
    # the norm of a row does not matter (directions), nor does any other subspace
    scaled = emb.clone()
    scaled[0, 128:256] *= 4.0
    scaled[:, :128] = torch.randn(3, 128)
    assert math.isclose(part_contrast_loss(scaled, labels, present, tau=1.0).item(), want,
                        rel_tol=1e-5)
    # a part not mixed in (label -1) or silent (present 0) takes no part; none left: zero
    assert part_contrast_loss(emb, labels, torch.zeros(3, 5)).item() == 0.0
    assert part_contrast_loss(emb, torch.full((3, 5), -1), present).item() == 0.0


def test_part_contrast_loss_gradient_pulls_shared_parts_together():
    from model.losses import part_contrast_loss

    g = torch.Generator().manual_seed(0)
    # 20 rows; rows 2k and 2k+1 share part k % 5 and nothing else (every other label unique)
    labels = torch.arange(100).reshape(20, 5) + 100
    for k in range(10):
        labels[2 * k + 1, k % 5] = labels[2 * k, k % 5]
    present = torch.ones(20, 5)
    x = (0.1 * torch.randn(20, 640, generator=g)).requires_grad_(True)
    opt = torch.optim.SGD([x], lr=0.05)
    first = part_contrast_loss(x, labels, present).item()
    for _ in range(100):
        opt.zero_grad()
        part_contrast_loss(x, labels, present).backward()
        opt.step()
    assert part_contrast_loss(x, labels, present).item() < 0.1 * first
    # in subspace c the rows of the pairs sharing c are each other's nearest (by cosine)
    z = torch.nn.functional.normalize(x.detach().reshape(20, 5, 128), dim=2)
    for k in range(10):
        c = k % 5
        cos = z[:, c] @ z[:, c].T - 3 * torch.eye(20)
        assert cos[2 * k].argmax().item() == 2 * k + 1 and cos[2 * k + 1].argmax().item() == 2 * k


def test_part_contrast_loss_leaves_out_pairs_that_share_more_than_the_part():
    from model.losses import part_contrast_loss

    g = torch.Generator().manual_seed(3)
    emb = torch.randn(4, 640, generator=g)
    present = torch.ones(4, 5)
    labels = torch.arange(20).reshape(4, 5)
    labels[1, 0] = labels[0, 0]  # rows 0 and 1 share drums only: a positive pair in drums
    base = part_contrast_loss(emb, labels, present)
    # rows 0 and 2 share bass only: in drums row 2 is a plain negative of row 0
    labels[2, 1] = labels[0, 1]
    assert part_contrast_loss(emb, labels, present).item() != base.item()  # bass has a pair now
    # rows 0 and 1 also share piano: no longer a drums pair (nor a piano one), so nothing is left
    both = labels.clone()
    both[2, 1] = 2 * 99
    both[1, 2] = both[0, 2]
    assert part_contrast_loss(emb, both, present).item() == 0.0
    # a part that is mixed in but silent in one of the rows is not shared
    quiet = present.clone()
    quiet[1, 2] = 0
    assert math.isclose(part_contrast_loss(emb, both, quiet).item(), base.item(), rel_tol=1e-6)


def test_part_contrast_loss_on_chosen_parts_only():
    from model.losses import part_contrast_loss

    g = torch.Generator().manual_seed(5)
    labels = torch.arange(60).reshape(12, 5)
    for k in range(6):  # rows 2k and 2k+1 share part k % 5
        labels[2 * k + 1, k % 5] = labels[2 * k, k % 5]
    emb, present = torch.randn(12, 640, generator=g), torch.ones(12, 5)
    each = [part_contrast_loss(emb, labels, present, parts=[c]).item() for c in range(5)]
    assert math.isclose(part_contrast_loss(emb, labels, present).item(), sum(each) / 5, rel_tol=1e-5)
    assert math.isclose(part_contrast_loss(emb, labels, present, parts=[2, 4]).item(),
                        (each[2] + each[4]) / 2, rel_tol=1e-5)
    # a subspace left out gets no gradient
    x = emb.clone().requires_grad_(True)
    part_contrast_loss(x, labels, present, parts=[2, 3, 4]).backward()
    assert x.grad[:, :256].abs().max().item() == 0.0 and x.grad[:, 256:].abs().max().item() > 0.0


def test_part_contrast_loss_on_distances():
    from model.losses import part_contrast_loss

    # bass: rows 0 and 1 share a source; row 2 another. Row 1 is row 0 at twice the length.
    e = torch.zeros(128)
    e[0] = 1.0
    emb = torch.zeros(3, 640)
    emb[0, 128:256], emb[1, 128:256] = e, 2 * e
    emb[2, 128] = -1.0
    labels = torch.full((3, 5), -1)
    labels[:, 1] = torch.tensor([7, 7, 9])
    present = torch.zeros(3, 5)
    present[:, 1] = 1
    # squared distances 0-1: 1, 0-2: 4, 1-2: 9, over the mean squared length (1 + 4 + 1) / 3 = 2
    want = (-math.log(math.exp(-0.5) / (math.exp(-0.5) + math.exp(-2)))
            - math.log(math.exp(-0.5) / (math.exp(-0.5) + math.exp(-4.5)))) / 2
    got = part_contrast_loss(emb, labels, present, tau=1.0, metric="euclid")
    assert math.isclose(got.item(), want, rel_tol=1e-5)
    # unlike the cosine form, lengths count: row 1 further out along the same direction
    far = emb.clone()
    far[1, 128:256] = 5 * e
    assert math.isclose(part_contrast_loss(far, labels, present, tau=1.0).item(),
                        part_contrast_loss(emb, labels, present, tau=1.0).item(), rel_tol=1e-6)
    assert part_contrast_loss(far, labels, present, tau=1.0, metric="euclid").item() > 2 * got.item()
    # the scale of the subspace does not matter; for unit rows it is the cosine form at tau / 2
    assert math.isclose(part_contrast_loss(3 * emb, labels, present, tau=1.0, metric="euclid").item(),
                        got.item(), rel_tol=1e-5)
    g = torch.Generator().manual_seed(1)
    unit = torch.nn.functional.normalize(torch.randn(3, 640, generator=g).reshape(3, 5, 128), dim=2)
    unit = unit.reshape(3, 640)
    assert math.isclose(part_contrast_loss(unit, labels, present, tau=0.2, metric="euclid").item(),
                        part_contrast_loss(unit, labels, present, tau=0.1).item(), rel_tol=1e-4)
    x = emb.clone().requires_grad_(True)
    part_contrast_loss(x, labels, present, tau=1.0, metric="euclid").backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="metric"):
        part_contrast_loss(emb, labels, present, metric="manhattan")


def test_part_contrast_loss_with_a_measure_per_part():
    from model.losses import contrast_metrics, part_contrast_loss

    g = torch.Generator().manual_seed(5)
    emb = torch.randn(8, 640, generator=g) * torch.linspace(0.5, 3.0, 8)[:, None]
    labels = torch.tensor([[1, 5, -1, -1, -1], [1, 6, -1, -1, -1], [2, 5, -1, -1, -1], [2, 7, -1, -1, -1],
                           [3, 8, -1, -1, -1], [3, 8, -1, -1, -1], [4, 9, -1, -1, -1], [9, 9, -1, -1, -1]])
    present = torch.ones(8, 5)
    per_part = contrast_metrics("drums:euclid")
    assert per_part == ("euclid", "cosine", "cosine", "cosine", "cosine")
    drums = part_contrast_loss(emb, labels, present, parts=[0], metric="euclid")
    bass = part_contrast_loss(emb, labels, present, parts=[1], metric="cosine")
    both = part_contrast_loss(emb, labels, present, parts=[0, 1], metric=per_part)
    assert math.isclose(both.item(), (drums.item() + bass.item()) / 2, rel_tol=1e-5)
    # and it differs from one measure for both parts
    assert not math.isclose(both.item(), part_contrast_loss(emb, labels, present, parts=[0, 1]).item(),
                            rel_tol=1e-3)
    assert contrast_metrics("euclid") == ("euclid",) * 5
    assert contrast_metrics(" bass:euclid , others:cosine ")[1] == "euclid"
    with pytest.raises(ValueError, match="violin"):
        contrast_metrics("violin:euclid")
    with pytest.raises(ValueError, match="manhattan.*bass"):
        contrast_metrics("bass:manhattan")
    with pytest.raises(ValueError, match="metric"):
        part_contrast_loss(emb, labels, present, metric=("euclid", "cosine"))


def test_the_distance_form_with_a_free_scale_gives_lengths_no_push():
    """Held scale: growing a subspace lowers the loss (its lengths drift up, as in chunk r13v);
    free scale: the loss is blind to the subspace's overall length."""
    from model.losses import part_contrast_loss

    g = torch.Generator().manual_seed(4)
    labels = torch.arange(100).reshape(20, 5) + 100
    for k in range(10):  # rows 2k and 2k+1 share part k % 5 and nothing else
        labels[2 * k + 1, k % 5] = labels[2 * k, k % 5]
    present = torch.ones(20, 5)
    emb = torch.randn(20, 640, generator=g)
    emb[1::2] = emb[0::2] + 0.3 * torch.randn(10, 640, generator=g)  # pairs near in every subspace

    def radial(hold: bool) -> float:  # d loss / d alpha at alpha 1, for emb scaled by alpha
        alpha = torch.tensor(1.0, requires_grad=True)
        part_contrast_loss(alpha * emb, labels, present, tau=0.5, metric="euclid", hold_scale=hold).backward()
        return alpha.grad.item()

    assert radial(True) < -0.1
    assert abs(radial(False)) < 1e-4
    free = part_contrast_loss(emb, labels, present, tau=0.5, metric="euclid", hold_scale=False)
    held = part_contrast_loss(emb, labels, present, tau=0.5, metric="euclid")
    assert free.item() == pytest.approx(held.item())  # the same value; only the gradient differs


def test_solo_id_loss_is_the_cross_entropy_of_the_sounding_part_over_log_lengths():
    bass = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]])
    # all length in the sounding part: nothing to learn
    assert solo_id_loss(_vec(bass=2.0)[None], bass).item() == pytest.approx(0.0, abs=1e-5)
    # five equal lengths: log 5, whatever the scale
    even = _vec(drums=1.0, bass=1.0, piano=1.0, guitar=1.0, others=1.0)[None]
    assert solo_id_loss(even, bass).item() == pytest.approx(math.log(5), rel=1e-4)
    assert solo_id_loss(7.0 * even, bass).item() == pytest.approx(math.log(5), rel=1e-4)
    # the bass holds a third of the summed length: -log(1/3)
    row = _vec(bass=1.0, others=2.0)[None]
    assert solo_id_loss(row, bass).item() == pytest.approx(math.log(3), rel=1e-4)


def test_solo_id_loss_reads_only_rows_where_one_part_sounds():
    rows = torch.stack([_vec(bass=1.0, others=2.0), _vec(drums=1.0), _vec(piano=5.0)])
    present = torch.tensor([[0.0, 1, 0, 0, 0], [1.0, 1, 0, 0, 0], [0.0, 0, 0, 0, 0]])
    assert solo_id_loss(rows, present).item() == pytest.approx(math.log(3), rel=1e-4)
    none = solo_id_loss(rows, torch.ones(3, 5))
    assert none.item() == 0.0
    x = torch.randn(4, 640, requires_grad=True)
    solo_id_loss(x, torch.eye(5)[[0, 1, 3, 4]]).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_invariance_loss_by_hand_part_by_part():
    # piano (2): pairs sharing the rest at 1.0 and 2.0, pairs sharing nothing at 3.0 and 5.0
    # -> (4 - 1.5) / 4; guitar (3): the rest brings no nearness -> 0; drums: no pairs
    d_rest = torch.tensor([1.0, 2.0, 3.0, 4.0])
    d_none = torch.tensor([3.0, 5.0, 3.0, 2.0])
    cond = torch.tensor([2, 2, 3, 3])
    assert invariance_loss(d_rest, d_none, cond).item() == pytest.approx((2.5 / 4 + 0.0) / 2)
    assert invariance_loss(d_rest, d_none, cond, parts=[2]).item() == pytest.approx(2.5 / 4)
    assert invariance_loss(d_rest, d_none, cond, parts=[3]).item() == 0.0
    assert invariance_loss(d_rest, d_none, cond, parts=[0]).item() == 0.0  # no drums pairs
    # a subspace scaled up tenfold is no more and no less leaky
    assert invariance_loss(10 * d_rest, 10 * d_none, cond).item() == pytest.approx((2.5 / 4) / 2)


def test_invariance_loss_pushes_the_rest_apart_and_nothing_else_together():
    d_rest = torch.tensor([1.0, 1.0], requires_grad=True)
    d_none = torch.tensor([2.0, 2.0], requires_grad=True)
    invariance_loss(d_rest, d_none, torch.tensor([1, 1])).backward()
    assert torch.all(d_rest.grad < 0)  # a larger distance between pieces sharing the rest lowers it
    assert torch.all(d_none.grad > 0)  # the denominator is held: no gain from growing everything
    assert d_none.grad.sum().item() == pytest.approx(1 / 2)
    # where the rest brings no nearness there is nothing to push
    d_rest2 = torch.tensor([3.0], requires_grad=True)
    invariance_loss(d_rest2, torch.tensor([2.0]), torch.tensor([1])).backward()
    assert d_rest2.grad.item() == 0.0


def test_stem_loss_by_hand_part_by_part():
    # piano (2): mixes 1.0 and 2.0 from their stems, pieces sharing nothing 3.0 and 5.0 -> 1.5 / 4;
    # guitar (3): 0.0 from the stem -> 0; drums: no rows
    d_stem = torch.tensor([1.0, 2.0, 0.0, 0.0])
    d_none = torch.tensor([3.0, 5.0, 3.0, 2.0])
    cond = torch.tensor([2, 2, 3, 3])
    assert stem_loss(d_stem, d_none, cond).item() == pytest.approx((1.5 / 4 + 0.0) / 2)
    assert stem_loss(d_stem, d_none, cond, parts=[2]).item() == pytest.approx(1.5 / 4)
    assert stem_loss(d_stem, d_none, cond, parts=[3]).item() == 0.0
    assert stem_loss(d_stem, d_none, cond, parts=[0]).item() == 0.0  # no drums rows
    assert stem_loss(d_stem[:0], d_none[:0], cond[:0]).item() == 0.0  # an empty step
    # rows left out count for nothing: the first piano row and both guitar rows
    keep = torch.tensor([False, True, False, False])
    assert stem_loss(d_stem, d_none, cond, keep=keep).item() == pytest.approx(2.0 / 5)
    ratios: dict[int, torch.Tensor] = {}
    stem_loss(d_stem, d_none, cond, parts=[2, 3], ratios=ratios)
    assert {c: r.item() for c, r in ratios.items()} == {2: pytest.approx(1.5 / 4), 3: 0.0}
    # scale-free: a subspace grown tenfold reads the same
    assert stem_loss(10 * d_stem, 10 * d_none, cond).item() == pytest.approx((1.5 / 4) / 2)


def test_stem_loss_pulls_the_mix_to_its_stem_and_the_unrelated_apart():
    d_stem = torch.tensor([1.0, 1.0], requires_grad=True)
    d_none = torch.tensor([2.0, 2.0], requires_grad=True)
    stem_loss(d_stem, d_none, torch.tensor([1, 1])).backward()
    assert torch.all(d_stem.grad > 0)  # nearer its stem lowers it
    assert torch.all(d_none.grad < 0)  # and so does a larger scale of unrelated pairs:
    # no gain from shrinking the whole subspace (the two pulls cancel along the scale)
    assert (d_stem.grad * 1.0).sum().item() + (d_none.grad * 2.0).sum().item() == pytest.approx(0.0, abs=1e-6)


def test_nuisance_leak_says_how_much_nearness_the_rest_gives():
    part, none = torch.tensor([1.0, 1.0]), torch.tensor([3.0, 3.0])
    assert nuisance_leak(part, torch.tensor([3.0, 3.0]), none) == pytest.approx(0.0)
    assert nuisance_leak(part, torch.tensor([2.0, 2.0]), none) == pytest.approx(0.5)
    assert nuisance_leak(part, torch.tensor([0.5, 0.5]), none) == pytest.approx(1.25)  # nearer than the part
    assert math.isnan(nuisance_leak(none, part, none))  # the part brings no nearness: undefined
