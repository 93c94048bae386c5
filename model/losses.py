"""Losses of the method: masked triplet (eq. 3), norm loss (eqs. 5-7), pre-training (eq. 9)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from model.parts import N_PARTS, PARTS, part_norms, presence_logits, stack_parts

TRIPLET_MARGIN = 0.2  # the paper's margin; the trainer's default
NORM_LAMBDA = 0.1  # the paper's weight of the norm loss; the trainer's default
_EPS = 1e-6


def masked_distance(x: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """d(x, y; m_c) = ||f(x) m_c - f(y) m_c||_2 (eq. 2): the distance in part ``cond`` of each
    row (:func:`model.parts.part_norms` of the difference). x, y: (B, 640); cond: (B,) -> (B,)."""
    return part_norms(x - y).gather(1, cond.reshape(-1, 1)).squeeze(1)


def masked_triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    cond: torch.Tensor,
    margin: float = TRIPLET_MARGIN,
) -> torch.Tensor:
    """Mean over the batch of max(d(a,p;m_c) - d(a,n;m_c) + margin, 0) (eq. 3).

    anchor, positive, negative: (B, 640); cond: (B,) long part index per triplet.
    """
    return triplet_hinge(masked_distance(anchor, positive, cond),
                         masked_distance(anchor, negative, cond), margin)


def triplet_hinge(d_ap: torch.Tensor, d_an: torch.Tensor, margin: float = TRIPLET_MARGIN) -> torch.Tensor:
    """The triplet loss from distances already taken: mean of max(d_ap - d_an + margin, 0)."""
    return F.relu(d_ap - d_an + margin).mean()


def part_hit_rates(d_ap: torch.Tensor, d_an: torch.Tensor, cond: torch.Tensor) -> dict[int, torch.Tensor]:
    """Per condition part that has triplets: the share whose positive is strictly nearer than
    the negative (a tie is a miss). Tensors (B,) -> {part index: 0-d tensor}, no gradient."""
    ok = (d_ap < d_an).float()
    return {int(c): ok[cond == c].mean() for c in cond.unique().tolist()}


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = TRIPLET_MARGIN) -> torch.Tensor:
    """Plain triplet loss on whole vectors (the individual networks)."""
    d_ap = (anchor - positive).norm(dim=1)
    d_an = (anchor - negative).norm(dim=1)
    return F.relu(d_ap - d_an + margin).mean()


class NormLoss(nn.Module):
    """BCE between p_j = sigmoid(log ||f(x) m_j|| + b_j) and presence targets q_j (eqs. 5-7).

    ``b`` is one learnable bias per part. Averaging over all rows of a batch that stacks
    anchors, positives and negatives equals the paper's 1/3 sum over the three.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(N_PARTS))

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, 640) -> (B, 5) logits of presence (:func:`model.parts.presence_logits`)."""
        return presence_logits(emb, self.bias)

    def forward(self, emb: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """emb: (B, 640); present: (B, 5) in {0, 1} -> scalar mean BCE."""
        return F.binary_cross_entropy_with_logits(self.logits(emb), present.to(emb.dtype))


class ScatterMemory:
    """Scatter matrices pooled over training steps, for the between-part spread term.

    A step holds a few dozen rows of a part and some fifteen pairs that sound the same audio of
    it: too few to estimate a 128 x 128 covariance, so the term's value (a participation ratio)
    jumps from step to step with the sample. :meth:`blend` keeps a decaying sum of each key's
    scatter, sum_t m^(T-t) S_t over count sum_t m^(T-t) n_t, and returns that pooled mean as the
    value while its gradient is the step's own, S_T / n_T: the pooled estimate says where the
    participation ratio stands, and the step's rows, an unbiased sample of the same quantity,
    say how the network moves it. ``momentum`` m in [0, 1): 0 is the step alone; 0.98 pools about
    fifty steps. Kept in memory only: a resumed run starts the pool again (it fills in about
    1 / (1 - m) steps).
    """

    def __init__(self, momentum: float):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self._sums: dict[object, torch.Tensor] = {}
        self._counts: dict[object, float] = {}

    def blend(self, key: object, scatter: torch.Tensor, n: int) -> torch.Tensor:
        """``scatter``: the step's sum of n outer products ((D, D), with its graph) -> the pooled
        mean as value, the step's mean ``scatter / n`` as gradient."""
        m, step = self.momentum, scatter / n
        total = scatter.detach().float()
        count = float(n)
        if key in self._sums:
            total = total + m * self._sums[key]
            count += m * self._counts[key]
        self._sums[key], self._counts[key] = total, count
        return total / count + (step - step.detach())


def spread_loss(emb: torch.Tensor, present: torch.Tensor, min_rows: int = 8, floor: float = 0.0,
                labels: torch.Tensor | None = None, min_pairs: int = 4,
                parts: Sequence[int] | None = None, memory: ScatterMemory | None = None,
                prs: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Mean over parts of 1 - log(PR_c) / log(128): how far each subspace is from spreading its
    variance over all its directions (0 = even spread, 1 = one direction).

    PR_c is the participation ratio (tr C)^2 / tr(C^2) of the covariance C of subspace c over
    the rows where part c is present (computed from the Gram matrix, (B x B)); parts present in
    fewer than ``min_rows`` rows are skipped. Scale-invariant, so it leaves the norms (and the
    norm loss's presence) alone. emb: (B, 640); present: (B, 5) in {0, 1}.

    With ``floor`` > 1 each part's term is max(0, 1 - log(PR_c) / log(floor)) instead: only a
    subspace spread over fewer than ``floor`` directions in the batch is pushed, and a part
    above it costs nothing (the plain term rewards doubling the dimension of a part at 20 as
    much as of one at 5, and spent its weight on parts already spread: chunk r13z).

    With ``labels`` ((B, 5) long, as :func:`part_contrast_loss` reads them: where each row's
    part comes from, -1 when it is not mixed in), C is the *between-part* scatter: the total
    covariance less the within-part one, estimated from the pairs of rows that sound the same
    c-part (C_w = mean of (x_i - x_j)(x_i - x_j)^T / 2 over those pairs). A direction along
    which the subspace follows the rest of the mix (the pair moves) then adds to C_w as much as
    to the total and earns nothing; only directions that tell one part from another count.
    Why: on the raw subspace the term filled the new directions of drums and bass with the song
    around the part, raising music-ID and lowering separation (chunk r13z3). A part with fewer
    than ``min_pairs`` such pairs is skipped. Computed on the (128 x 128) covariances.

    ``parts`` (indices) limits the term to those subspaces (all when None).

    ``memory`` (with ``labels``): the total and within-part scatters are pooled over steps
    (:class:`ScatterMemory`) instead of taken from this step's rows and pairs alone.

    ``prs``, when given, receives each scored part's participation ratio (detached), for the log.
    """
    sub = stack_parts(emb)
    hinge = floor > 1.0
    terms = []
    for c in range(N_PARTS) if parts is None else parts:
        rows = present[:, c] > 0
        if labels is not None:
            rows = rows & (labels[:, c] >= 0)
        x = sub[rows, c]
        if len(x) < min_rows:
            continue
        x = x.float()
        xc = x - x.mean(dim=0, keepdim=True)
        if labels is None:
            gram = xc @ xc.T
            pr = (torch.diagonal(gram).sum() ** 2 / (gram.pow(2).sum() + _EPS)).clamp_min(1.0)
        else:
            lab = labels[rows, c]
            i, j = torch.triu((lab[:, None] == lab[None, :]), diagonal=1).nonzero(as_tuple=True)
            if len(i) < min_pairs:
                continue
            d = x[i] - x[j]
            if memory is None:
                cov = xc.T @ xc / len(x) - d.T @ d / (2 * len(i))
            else:
                cov = memory.blend(("total", c), xc.T @ xc, len(x)) \
                    - memory.blend(("within", c), d.T @ d / 2, len(i))
            # an estimate, not a covariance: the difference may have negative eigenvalues, and
            # PR then falls under 1; let the term see down to 0.1 (a cap, and a gradient there)
            pr = (torch.trace(cov).clamp_min(0.0) ** 2 / (cov.pow(2).sum() + _EPS)).clamp_min(0.1)
        if prs is not None:
            prs[c] = pr.detach()
        term = 1.0 - torch.log(pr) / math.log(floor if hinge else x.shape[1])
        terms.append(torch.relu(term) if hinge else term)
    return torch.stack(terms).mean() if terms else emb.sum() * 0.0


def solo_id_loss(emb: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the sounding part over the five subspaces' log-lengths, on the rows
    where exactly one part sounds: -log(||f_c|| / sum_j ||f_j||), 0 when that part holds all
    the length. The training form of Table 3's rule (a clean stem is identified by its longest
    subspace), which the norm loss reaches only through five separate presence decisions, each
    with its own bias. Scale-free; rows with none or several parts are skipped (0 when no row
    qualifies). emb: (B, 640); present: (B, 5) in {0, 1}.
    """
    one = (present.sum(dim=1) == 1).to(emb.dtype)
    # weighed, not indexed: no branch on the data, so a CUDA step never waits for the device
    ce = F.cross_entropy(torch.log(part_norms(emb) + _EPS), present.argmax(dim=1), reduction="none")
    return (ce * one).sum() / one.sum().clamp_min(1.0)


def _part_means(cond: torch.Tensor, *values: torch.Tensor, parts: Sequence[int] | None = None,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Per part, the mean of each of ``values`` ((M,) each) over the rows of that condition
    (``cond``, (M,)), counting only parts in ``parts`` (all when None) and rows where ``keep``
    is set (all when None) -> (used, mean, ...), each (5,); ``used`` is 1 where a part has rows.
    Weighed, not indexed: no branch on the data."""
    onehot = F.one_hot(cond, N_PARTS).to(values[0].dtype)  # (M, 5)
    if parts is not None:
        onehot = onehot * torch.isin(torch.arange(N_PARTS, device=cond.device),
                                     torch.as_tensor(list(parts), device=cond.device, dtype=torch.long))
    if keep is not None:
        onehot = onehot * keep.to(onehot.dtype)[:, None]
    count = onehot.sum(dim=0)
    means = tuple((onehot * v[:, None]).sum(dim=0) / count.clamp_min(1.0) for v in values)
    return ((count > 0).to(onehot.dtype), *means)


def invariance_loss(d_rest: torch.Tensor, d_none: torch.Tensor, cond: torch.Tensor,
                    parts: Sequence[int] | None = None) -> torch.Tensor:
    """How much nearer the rest of the mix brings two pieces in a part's subspace.

    ``d_rest``: distances in subspace ``cond`` between pieces that share other parts of the mix
    but not part ``cond`` (a triplet's anchor and negative); ``d_none``: distances in the same
    subspace between pieces that share no part (its positive and negative). A subspace that
    hears only its own part puts both kinds of pair equally far apart on average; one that
    hears the rest of the mix puts the first nearer. Per part c with pairs in the batch:
    relu(mean d_none - mean d_rest) / mean d_none, the denominator held constant (so the loss
    cannot shrink by rescaling the subspace), averaged over the parts in ``parts`` (default
    all) that have pairs; 0 when none has. One-sided: pairs that share the rest are never
    pushed further apart than pairs that share nothing. The triplet loss asks only that pieces
    sharing the part be nearer than those sharing the rest, by a margin; this term asks that
    the rest bring no nearness of its own. d_rest, d_none, cond: (M,).
    """
    used, mean_rest, mean_none = _part_means(cond, d_rest, d_none, parts=parts)
    gap = F.relu(mean_none - mean_rest) / mean_none.detach().clamp_min(_EPS)
    return (gap * used).sum() / used.sum().clamp_min(1.0)


def stem_loss(d_stem: torch.Tensor, d_none: torch.Tensor, cond: torch.Tensor,
              parts: Sequence[int] | None = None, keep: torch.Tensor | None = None,
              ratios: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """How far a part's subspace of a mix lies from the same subspace of the part played alone.

    ``d_stem``: distances in subspace ``cond`` between a mixed piece and the clean stem of its
    part ``cond`` (same audio, same level; the caller holds the stem's embedding constant, so
    it is a target); ``d_none``: distances in the same subspace between pieces that share no
    part, the scale. Per part c with rows in the batch: mean d_stem / mean d_none, gradient
    through both (scale-free: shrinking the subspace earns nothing), averaged over the parts in
    ``parts`` (default all) that have rows; 0 when none has. 0 means the mix reads exactly as
    the part alone, whatever plays beside it: the rest of the mix cannot bring two pieces near.
    Where :func:`invariance_loss` only asks that sharing the rest bring no nearness on average,
    this gives each mixed piece the point it should sit at. d_stem, d_none, cond: (M,).
    ``keep`` ((M,) bool or {0, 1}): the rows to score (a stem that came out silent is no
    target); all when None. ``ratios``, when given, receives each scored part's ratio
    (detached), for the log.
    """
    used, mean_stem, mean_none = _part_means(cond, d_stem, d_none, parts=parts, keep=keep)
    ratio = mean_stem / mean_none.clamp_min(_EPS)
    if ratios is not None:
        ratios |= {c: ratio[c].detach() for c in torch.nonzero(used).flatten().tolist()}
    return (ratio * used).sum() / used.sum().clamp_min(1.0)


def nuisance_leak(d_part: torch.Tensor, d_rest: torch.Tensor, d_none: torch.Tensor) -> float:
    """The share of a subspace's nearness that the rest of the mix gives:
    (mean d_none - mean d_rest) / (mean d_none - mean d_part), over pairs sharing only the part
    (``d_part``), only the rest (``d_rest``) or nothing (``d_none``). 0: the rest brings pieces
    no nearer; 1: sharing the rest brings them as near as sharing the part; above 1: nearer.
    NaN when sharing the part brings no nearness at all."""
    gain = (d_none.mean() - d_part.mean()).item()
    return (d_none.mean() - d_rest.mean()).item() / gain if gain > 0 else float("nan")


CONTRAST_METRICS: tuple[str, ...] = ("cosine", "euclid")  # part_contrast_loss's pair measures


def contrast_metrics(spec: str) -> tuple[str, ...]:
    """Per-part pair measures of ``part_contrast_loss`` from a spec: one measure for every part
    (``euclid``), or ``part:measure`` pairs with cosine for the parts not named
    (``drums:euclid,bass:euclid``). Raises ValueError naming what is wrong."""
    spec = spec.strip()
    if ":" not in spec:
        if spec not in CONTRAST_METRICS:
            raise ValueError(f"expected one of {', '.join(CONTRAST_METRICS)} or part:measure pairs, got {spec!r}")
        return (spec,) * N_PARTS
    out = ["cosine"] * N_PARTS
    for item in filter(None, (x.strip() for x in spec.split(","))):
        part, _, measure = item.partition(":")
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r} in {spec!r}; choose from {', '.join(PARTS)}")
        if measure not in CONTRAST_METRICS:
            raise ValueError(f"unknown measure {measure!r} for {part} in {spec!r}; "
                             f"choose from {', '.join(CONTRAST_METRICS)}")
        out[PARTS.index(part)] = measure
    return tuple(out)


def part_contrast_loss(emb: torch.Tensor, labels: torch.Tensor, present: torch.Tensor,
                       tau: float = 0.1, parts: Sequence[int] | None = None,
                       metric: str | Sequence[str] = "cosine", hold_scale: bool = True) -> torch.Tensor:
    """Supervised contrastive loss in each subspace, over every row of a batch at once.

    ``labels[i, c]`` names where the c-part of row i comes from (its source track; -1 when the
    part is not mixed in). Rows i and j *share* part d when both sound it from the same track.
    In subspace c, a pair that shares part c and no other part is positive; a pair that shares
    c and another part too is left out (it would reward the subspace for hearing that other
    part: a subspace that encodes the whole song passes it); every other row where c sounds is
    a negative, those sharing only other parts included, which asks the subspace to ignore
    them. The loss is the mean over rows with at least one positive of
    -mean_{j in P(i)} log softmax_k(cos(x_i, x_k) / tau)_j (k over the rows not left out),
    averaged over the parts that have such rows.

    Why beside the triplet loss: a triplet shows each anchor one negative, so a subspace can
    satisfy it with one direction (a loudness-like number, the collapse of bass and piano);
    Table 2 asks the subspace to pick the one piece that shares the part out of many. Here each
    anchor meets every other piece of the batch. On directions (cosine), so the norms stay the
    norm loss's presence. emb: (B, 640); labels: (B, 5) long; present: (B, 5); parts: the
    subspaces the term acts on (indices; all when None). Pairs still count every part when
    deciding what they share.

    ``metric="euclid"`` scores pairs by -|x_i - x_j|^2 / (tau * s) on the subspaces as they are,
    the distance search and the evaluation use, so lengths count too; s, the mean squared length
    of the subspace's rows (a constant of the step unless ``hold_scale`` is off), makes tau mean
    the same in a long subspace (drums, about 3.3 on r13k1) as in a short one (others, 0.8). For
    unit rows it is the cosine form at tau / 2. ``metric`` may also name one measure per part (five, in PARTS order;
    see ``contrast_metrics``).

    ``hold_scale`` (the default, as chunks r13e1 and r13v trained): s is a constant of the step,
    so a longer subspace sharpens every score and lowers the loss, and the lengths grow (drums'
    mean norm 3.9 -> 13.2 over r13v). ``hold_scale=False`` lets s carry its gradient: the
    distance form is then blind to the subspace's overall length, which stays the norm loss's.
    """
    metrics = (metric,) * N_PARTS if isinstance(metric, str) else tuple(metric)
    if len(metrics) != N_PARTS or any(m not in CONTRAST_METRICS for m in metrics):
        raise ValueError(f"metric must be one of {', '.join(CONTRAST_METRICS)} or {N_PARTS} of them, "
                         f"got {metric!r}")
    raw = stack_parts(emb).float()
    unit = F.normalize(raw, dim=2, eps=_EPS)
    on = (labels >= 0) & (present > 0)
    # share[d, i, j]: rows i and j sound part d from the same track
    share = (labels.T[:, :, None] == labels.T[:, None, :]) & on.T[:, :, None] & on.T[:, None, :]
    n_shared = share.sum(dim=0)  # (B, B): how many parts each pair shares
    eye = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    terms = []
    for c in range(N_PARTS) if parts is None else parts:
        rows = on[:, c]
        if int(rows.sum()) < 3:
            continue
        others = n_shared > share[c].long()  # the pair shares a part other than c
        pos = share[c] & ~others & ~eye
        drop = (share[c] & others) | eye
        pos, drop = pos[rows][:, rows], drop[rows][:, rows]
        has = pos.any(dim=1)
        if not bool(has.any()):
            continue
        z = (unit if metrics[c] == "cosine" else raw)[rows, c]
        sim = z @ z.T
        if metrics[c] == "euclid":  # -|z_i - z_j|^2 / s, with smooth gradients at zero distance
            sq = z.pow(2).sum(dim=1)
            scale = sq.mean().clamp_min(_EPS)
            sim = (2.0 * sim - sq[:, None] - sq[None, :]) / (scale.detach() if hold_scale else scale)
        logp = (sim / tau).masked_fill(drop, float("-inf")).log_softmax(dim=1)
        per_row = -(logp.masked_fill(~pos, 0.0).sum(dim=1) / pos.sum(dim=1).clamp_min(1))
        terms.append(per_row[has].mean())
    return torch.stack(terms).mean() if terms else emb.sum() * 0.0


def pretrain_target(individual: torch.Tensor, present: torch.Tensor,
                    center: torch.Tensor | None = None, block_norm: bool = False) -> torch.Tensor:
    """Target of eq. 9: concat of g_j(x_ij) with silent parts zeroed, divided by its L2 norm.

    individual: (B, 5, 128) outputs of the individual networks on clean stems;
    present: (B, 5) in {0, 1}; center: optional (5, 128) mean output of each individual network
    (over audible training stems), subtracted first. Returns (B, 640); all-silent rows stay zero.

    Why ``center``: a triplet-trained network is free to add any constant to its outputs, and
    small ones do (mean 5-90 times the spread around it). Divided by the norm of the whole
    concat, whose size depends on which other parts sound, such a block varies mostly in length
    along its mean: one direction (effective dimension 1), a presence-and-loudness number that
    pre-training then copies into the CSN. Centred, the block keeps the directions that tell
    stems apart.

    Why ``block_norm``: centred blocks vary in length (a stem near its net's mean output gets a
    short block), so a block's norm no longer says whether its part sounds, and the norm loss
    must learn presence from nothing (measured: presence accuracy stays at the base rate for
    epochs). With ``block_norm`` each sounding block is scaled to unit length before the whole
    concat is: every sounding part's block then has norm 1/sqrt(k) (k parts sound), every silent
    one 0, and the directions within a block are the centred ones.
    """
    if center is not None:
        individual = individual - center.to(individual.dtype)
    if block_norm:
        individual = individual / individual.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    y = (individual * present.to(individual.dtype).unsqueeze(-1)).flatten(1)
    return y / y.norm(dim=1, keepdim=True).clamp_min(_EPS)


def pretrain_loss(emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between f(x_i) and y_i / ||y_i|| (eq. 9)."""
    return F.mse_loss(emb, target)


def pretrain_block_loss(emb: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Pre-training by direction and length, part by part (``pre_loss="blocks"``): for each
    sounding part, 1 - cos between its output block and its target block; for every part, the
    squared difference of the two blocks' lengths (so silence and presence are learned too).

    Why not eq. 9's MSE: against unit-length targets, MSE is lowered most by shrinking every
    output towards zero, and from there it teaches directions slowly (measured: the cpu-preset
    network fits 64 random unit targets to MSE x 640 = 0.97 in 200 Adam steps; with the cosine
    it fits them exactly in 100). emb, target: (B, 640); present: (B, 5) in {0, 1}.
    """
    e, t = stack_parts(emb), stack_parts(target)
    on = present.to(emb.dtype)
    cos = F.cosine_similarity(e, t, dim=-1, eps=_EPS)  # (B, 5)
    direction = ((1.0 - cos) * on).sum() / on.sum().clamp_min(1.0)
    length = (e.norm(dim=-1) - t.norm(dim=-1)).pow(2).mean()
    return direction + length


def distill_loss(emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """How far a network's embedding is from another network's on the same mixes, part by
    part: per subspace, sum over rows of ||e_j - t_j||^2 over the sum of ||t_j||^2 (the
    teacher's own energy there, so every subspace weighs alike whatever its scale), then the
    mean over the five. 0 where the two agree; 1 where ``emb`` is all zeros. The teacher's
    lengths (its presence) are kept along with its directions. emb, target: (B, 640)."""
    e, t = stack_parts(emb), stack_parts(target.to(emb.dtype))  # (B, 5, 128)
    err = (e - t).pow(2).sum(dim=(0, 2))
    energy = t.pow(2).sum(dim=(0, 2)).clamp_min(_EPS)
    return (err / energy).mean()


def block_cosine(emb: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> float:
    """Mean cos between output and target blocks over the sounding parts (a pre-training
    validation figure that does not depend on the loss)."""
    cos = F.cosine_similarity(stack_parts(emb), stack_parts(target), dim=-1, eps=_EPS)
    on = present.to(emb.dtype)
    return float((cos * on).sum() / on.sum().clamp_min(1.0))
