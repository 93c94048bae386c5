"""Evaluation with the paper's protocol (sec. 4.2-4.3) on any Slakh-layout dataset.

Everything is computed from an *embedding function* ``EmbedFn``: (B, samples) float32 clips at
the dataset's sample rate -> (B, D) float32. A trained CSN, the individual networks, the MFCC
baseline and hand-built oracles in tests all plug in the same way. Accuracies are percentages
in [0, 100]; correlations are Pearson r; NaN (None in JSON, "-" in Markdown) when a table has
nothing to score. Fixed seeds: the same inputs give the same numbers.

Fast checks for validation during training (each returns ``{part: accuracy %}``)::

    from trainer.evaluate import model_embed_fn, pseudo_piece_knn, stem_identification
    fn = model_embed_fn(model, spec.audio)          # eval mode inside, training mode restored
    pseudo_piece_knn(val_set, fn, n_labels=10, per_label=4, seconds=3.0, seed=0,
                     draws=1, max_seconds=30.0)    # Table 2 in small (mean over draws)
    pseudo_piece_draws(...)                        # the same, {part: [accuracy per draw]}
    pseudo_piece_spread(...)                       # ("drawn" | "every", {part: mean, std, ...}):
                                                   # every pair on a split too small for draws
    stem_identification(val_set, fn, seconds=3.0, max_tracks=None, seed=0)  # Table 3
    music_id_knn(val_set, fn, seconds=3.0, max_tracks=None, seed=0)         # Table 1

``max_tracks`` evaluates a seeded subset of tracks, ``max_segments`` keeps at most that many
evenly spread segments per track, ``max_seconds`` caps each pseudo piece: the knobs that make
these cheap enough to run every few epochs.

The full report (``partwise-train eval``, :func:`trainer.evaluate.report.run`):

- Table 1: kNN (k = 5, majority vote, target excluded) music-ID accuracy per subspace, 3/5/10 s.
- Table 2: per part 10 labels x 4 pseudo pieces from test tracks (same tempo class, else the
  nearest); kNN with the target's own pseudo piece excluded; averaged over 10 seeded draws,
  with the spread (std, min-max) so that two models can be told apart.
- Table 3: each audible clean stem alone; predicted part = the subspace with the largest norm.
- Table 4: correlation of the distance matrices of clean-stem input and of mix input, per part.
- Table 5: correlations between the parts' distance matrices on mix input.
- Effective dimension (participation ratio) of every part's space on mixes and clean stems,
  and presence decisions (norm-loss biases) on clean stems and mixes.
- Baselines on the same segments: the individual networks on the mix and on clean stems, and
  MFCC statistics (one space for all parts).

Modules: ``metrics`` (kNN, largest norm, matrix correlation), ``segments`` (cutting and embedding
pieces and pseudo pieces), ``tables`` (Tables 1-5 over embedded segments), ``baselines``
(embedding functions), ``validation`` (the fast checks), ``report`` / ``plots`` / ``cli``.
"""

from trainer.evaluate.baselines import MelCache, MFCCStats, model_embed_fn
from trainer.evaluate.segments import EmbedFn
from trainer.evaluate.validation import (
    music_id_knn,
    pseudo_piece_draws,
    pseudo_piece_knn,
    pseudo_piece_spread,
    stem_identification,
)

__all__ = ["EmbedFn", "MFCCStats", "MelCache", "model_embed_fn", "music_id_knn",
           "pseudo_piece_draws", "pseudo_piece_knn", "pseudo_piece_spread", "stem_identification"]
