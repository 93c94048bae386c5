"""Fast, parameterised versions of Tables 1-3 for validation during training.

Each takes a dataset (the Slakh-layout loader, one split) and one ``EmbedFn`` giving 640-d
embeddings, and returns ``{part: accuracy in %}``. Seeded: the same call gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.parts import PARTS
from trainer.evaluate.metrics import label_spread, spread
from trainer.evaluate.segments import (
    ActivityFn,
    Dataset,
    EmbedFn,
    collect_pieces,
    collect_pseudo,
    plan_draws,
    table2_plan,
)
from trainer.evaluate.tables import (
    csn_method,
    music_id,
    pseudo_separation_draws,
    pseudo_separation_hits,
    stem_identification_table,
)

FN = "model"


def pick_tracks(n_tracks: int, max_tracks: int | None, seed: int) -> list[int]:
    """All indices, or ``max_tracks`` of them drawn with ``seed`` (in ascending order)."""
    if max_tracks is None or max_tracks >= n_tracks:
        return list(range(n_tracks))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_tracks, max_tracks, replace=False))


def pseudo_piece_draws(dataset: Dataset, embed_fn: EmbedFn, n_labels: int = 10,
                       per_label: int = 4, seconds: float = 3.0, seed: int = 0, draws: int = 1,
                       *, k: int = 5, max_seconds: float | None = 30.0,
                       parts: Sequence[str] = PARTS, batch_size: int = 32,
                       activity: ActivityFn | None = None,
                       progress: bool = False) -> dict[str, list[float]]:
    """Table 2 in small, once per seeded draw (seeds ``seed``, ``seed + 1``, ...): per part,
    ``n_labels`` x ``per_label`` pseudo pieces, kNN with the target's own pseudo piece left out.
    ``max_seconds`` caps each pseudo piece's length. Returns ``{part: [accuracy % per draw]}``."""
    plan = plan_draws(dataset.tracks, parts, n_labels, per_label, seed, draws)
    method = csn_method("model", FN)
    sets = collect_pseudo(dataset, plan.pieces, seconds, {p: method.jobs((p,)) for p in parts},
                          {FN: embed_fn}, batch_size=batch_size, max_seconds=max_seconds,
                          activity=activity, progress=progress)
    scores = pseudo_separation_draws(sets, method, plan, k=k, seed=seed)
    return {p: scores.get(p, [float("nan")] * draws) for p in parts}


def pseudo_piece_spread(dataset: Dataset, embed_fn: EmbedFn, n_labels: int = 10,
                        per_label: int = 4, seconds: float = 3.0, seed: int = 0, draws: int = 1,
                        *, plan: str = "auto", k: int = 5, max_seconds: float | None = 30.0,
                        parts: Sequence[str] = PARTS, batch_size: int = 32,
                        activity: ActivityFn | None = None,
                        progress: bool = False) -> tuple[str, dict[str, dict[str, float]]]:
    """Table 2 in small with its error, on the plan ``partwise-train eval`` would take
    (:func:`trainer.evaluate.segments.every_pair`): ``("drawn", {part: spread over the seeded
    draws})``, or on a split too small for draws to differ, ``("every", {part: figure over every
    pair of whole pieces, with its standard error over label tracks})``; ``max_seconds`` and
    ``draws`` only shape the drawn plan. The spreads are :func:`trainer.evaluate.metrics.spread`
    and :func:`~trainer.evaluate.metrics.label_spread` (``mean``, ``std``, ...)."""
    every, pieces = table2_plan(dataset.tracks, parts, n_labels, per_label, seed, draws, plan)
    method = csn_method("model", FN)
    sets = collect_pseudo(dataset, pieces.pieces, seconds, {p: method.jobs((p,)) for p in parts},
                          {FN: embed_fn}, batch_size=batch_size,
                          max_seconds=None if every else max_seconds, activity=activity,
                          progress=progress)
    if every:
        hits = pseudo_separation_hits(sets, method, k=k, seed=seed)
        return "every", {p: label_spread(hits.get(p, {})) for p in parts}
    scores = pseudo_separation_draws(sets, method, pieces, k=k, seed=seed)
    return "drawn", {p: spread(scores.get(p, [float("nan")] * draws)) for p in parts}


def pseudo_piece_knn(dataset: Dataset, embed_fn: EmbedFn, n_labels: int = 10, per_label: int = 4,
                     seconds: float = 3.0, seed: int = 0, *, draws: int = 1,
                     **kw) -> dict[str, float]:
    """Table 2 in small: :func:`pseudo_piece_draws` averaged over its ``draws``
    (``{part: accuracy %}``)."""
    per_draw = pseudo_piece_draws(dataset, embed_fn, n_labels, per_label, seconds, seed, draws,
                                  **kw)
    return {p: spread(v)["mean"] for p, v in per_draw.items()}


def music_id_knn(dataset: Dataset, embed_fn: EmbedFn, seconds: float = 3.0,
                 max_tracks: int | None = None, seed: int = 0, *, k: int = 5,
                 max_segments: int | None = None, batch_size: int = 32,
                 activity: ActivityFn | None = None, progress: bool = False) -> dict[str, float]:
    """Table 1 in small: kNN music-ID accuracy per subspace on mix segments of ``seconds``."""
    method = csn_method("model", FN)
    sets = collect_pieces(dataset, pick_tracks(len(dataset), max_tracks, seed),
                          {seconds: method.jobs()}, {FN: embed_fn}, batch_size=batch_size,
                          max_segments=max_segments, activity=activity, progress=progress)
    return music_id(sets[seconds], method, k=k, seed=seed)


def stem_identification(dataset: Dataset, embed_fn: EmbedFn, seconds: float = 3.0,
                        max_tracks: int | None = None, seed: int = 0, *,
                        max_segments: int | None = None, batch_size: int = 32,
                        activity: ActivityFn | None = None,
                        progress: bool = False) -> dict[str, float]:
    """Table 3 in small: each audible clean stem alone; right when its part's subspace has the
    largest norm."""
    jobs = {(FN, p) for p in PARTS}
    sets = collect_pieces(dataset, pick_tracks(len(dataset), max_tracks, seed), {seconds: jobs},
                          {FN: embed_fn}, batch_size=batch_size, max_segments=max_segments,
                          activity=activity, skip_silent_stems=True, progress=progress)
    return stem_identification_table(sets[seconds], FN, seed=seed)[0]
