"""Run every table on one dataset split and write ``report.json``, ``report.md`` and the plots.

:func:`evaluate` does the work on embedding functions (so tests can hand it oracles);
:func:`run` loads weights files, evaluates and writes the report folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.audio import AudioConfig
from model.embedder import Embedder
from model.parts import EMBED_DIM, PARTS
from model.weights import WeightsError, read_card
from trainer.evaluate import paper
from trainer.evaluate.baselines import (
    IndividualNets,
    MelCache,
    MFCCStats,
    SpectralShape,
    check_rates,
)
from trainer.evaluate.metrics import label_spread, spread
from trainer.evaluate.segments import (
    PLANS,
    ActivityFn,
    Dataset,
    EmbedFn,
    Job,
    SegmentSet,
    collect_pieces,
    collect_pseudo,
    table2_plan,
    tempo_mismatches,
)
from trainer.evaluate.tables import (
    Method,
    Space,
    cross_correlation,
    csn_method,
    effective_dimension,
    mean,
    mix_presence,
    music_id,
    per_part_method,
    pseudo_separation_draws,
    pseudo_separation_hits,
    shared_method,
    stem_identification_confusion,
    stem_identification_table,
    stem_mix_correlation,
    stem_presence,
)
from trainer.evaluate.validation import pick_tracks

log = logging.getLogger(__name__)

REPORT_VERSION = 2  # 2: Table 2 over seeded draws with its spread, effective dimension, presence


@dataclass
class EvalConfig:
    """The protocol's knobs; the defaults follow the paper (sec. 4.1.1, 4.2)."""

    split: str = "test"
    seconds: tuple[float, ...] = (3.0, 5.0, 10.0)  # Table 1 segment lengths (no overlap)
    main_seconds: float = 5.0  # Tables 2-5 and the figures (the paper reports 5 s)
    k: int = 5  # kNN neighbours, majority vote
    n_labels: int = 10  # Table 2: labels per part ...
    per_label: int = 4  # ... times pseudo pieces per label = 40 pseudo pieces
    draws: int = 10  # Table 2: seeded draws of those pseudo pieces (seed, seed + 1, ...), averaged
    # Table 2's plan: "drawn" (the draws above), "every" (every label with every other track,
    # whole pieces, once) or "auto" (every pair when no part has more label tracks than
    # n_labels: on so small a split the draws would repeat the same few pieces)
    plan: str = "auto"
    seed: int = 0
    audible_only: bool = True  # score a part only on segments where it is audible
    max_tracks: int | None = None  # seeded subset of the split's tracks
    max_segments: int | None = None  # per track and length, spread evenly
    max_pseudo_seconds: float | None = 30.0  # cap each pseudo piece's length (None: whole)
    baselines_all_lengths: bool = False  # Table 1 baselines at every length, not just main
    max_matrix_segments: int = 2000  # Tables 4-5: seeded subset for the distance matrices
    batch_size: int = 64  # clips per network call (larger is faster on CPU too)
    n_mfcc: int = 20
    plots: bool = True
    # Table 2: every other pseudo piece of a label takes the label part from its twin (the same
    # notes in another timbre; segments.collect_pseudo); the split needs 'data twins'
    twins: bool = False

    def __post_init__(self) -> None:
        self.seconds = tuple(sorted({float(s) for s in self.seconds}))
        if self.main_seconds not in self.seconds:
            self.seconds = tuple(sorted({*self.seconds, float(self.main_seconds)}))
        if self.k < 1 or self.n_labels < 1 or self.per_label < 1 or self.draws < 1:
            raise ValueError("k, n_labels, per_label and draws must be at least 1")
        if self.plan not in PLANS:
            raise ValueError(f"plan must be one of {', '.join(PLANS)}, got {self.plan!r}")


# Method ids (JSON keys) and their names in the Markdown report.
NAMES = {
    "proposed": "Partwise CSN (mix)",
    "proposed_stem": "Partwise CSN (clean stem)",
    "individual_mix": "individual nets (mix)",
    "individual_clean": "individual nets (clean stems)",
    "mfcc": "MFCC stats (mix)",
    "mfcc_stem": "MFCC stats (clean stem)",
}


def methods(individual: bool) -> dict[str, Method]:
    """The methods evaluated, keyed by id. Embedding function names: ``csn`` (640-d, the
    weights), ``ind`` (the five individual nets concatenated), ``ind_<part>``, ``mfcc``."""
    m = {
        "proposed": csn_method("proposed", "csn"),
        "proposed_stem": csn_method("proposed_stem", "csn", "stem"),
        "mfcc": shared_method("mfcc", "mfcc", standardize=True),
        "mfcc_stem": Method("mfcc_stem", {p: Space("mfcc", "stem") for p in PARTS},
                            standardize=True),
        "shape_stem": Method("shape_stem", {p: Space("shape", "stem") for p in PARTS}),
    }
    if individual:
        ind = {p: f"ind_{p}" for p in PARTS}
        m["individual_mix"] = csn_method("individual_mix", "ind")
        m["individual_clean"] = per_part_method("individual_clean", ind, "stem")
        # on pseudo pieces each part needs only its own network: same vectors, a fifth the work
        m["individual_mix_pp"] = per_part_method("individual_mix", ind, "mix")
    return m


@dataclass
class Evaluation:
    """Results (JSON-ready) and the embedded segments they came from (for plots)."""

    results: dict[str, Any]
    pieces: dict[float, SegmentSet]
    pseudo: dict[str, SegmentSet]
    tracks: list[int] = field(default_factory=list)


def evaluate(dataset: Dataset, fns: Mapping[str, EmbedFn], config: EvalConfig | None = None,
             *, activity: ActivityFn | None = None, norm_bias: list[float] | None = None,
             progress: bool = False) -> Evaluation:
    """Tables 1-5 on ``dataset`` for the CSN ``fns["csn"]`` and the baselines present in ``fns``
    (``mfcc``; ``ind`` and ``ind_<part>`` for the individual networks; ``shape``, the clean
    stems' spectral shape, for the reference effective dimension), with Table 2 over
    ``config.draws`` seeded draws, the effective dimension of every part's space and the CSN's
    presence decisions (``norm_bias``: the trained norm-loss biases of its card)."""
    cfg = config or EvalConfig()
    have_ind = "ind" in fns and all(f"ind_{p}" in fns for p in PARTS)
    ms = methods(have_ind)
    if "mfcc" not in fns:
        ms = {k: v for k, v in ms.items() if not k.startswith("mfcc")}
    if "shape" not in fns:
        ms.pop("shape_stem")
    t1_methods = [k for k in ("proposed", "individual_mix", "individual_clean", "mfcc") if k in ms]
    jobs: dict[float, set[Job]] = {s: set() for s in cfg.seconds}
    t1_lengths = {k: cfg.seconds if k == "proposed" or cfg.baselines_all_lengths
                  else (cfg.main_seconds,) for k in t1_methods}
    for k in t1_methods:
        for s in t1_lengths[k]:
            jobs[s] |= ms[k].jobs()
    jobs[cfg.main_seconds] |= ms["proposed_stem"].jobs()
    for k in ("mfcc_stem", "shape_stem"):
        if k in ms:
            jobs[cfg.main_seconds] |= ms[k].jobs()

    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    tracks = pick_tracks(len(dataset), cfg.max_tracks, cfg.seed)
    if not tracks:
        raise ValueError("the dataset split has no tracks to evaluate")
    pieces = collect_pieces(dataset, tracks, jobs, fns, batch_size=cfg.batch_size,
                            max_segments=cfg.max_segments, activity=activity,
                            skip_silent_stems=cfg.audible_only, progress=progress)
    timing["embed_pieces_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sub_tracks = [dataset.tracks[i] for i in tracks]
    every, draws = table2_plan(sub_tracks, PARTS, cfg.n_labels, cfg.per_label, cfg.seed,
                               cfg.draws, cfg.plan, indices=tracks)
    max_pseudo_seconds = None if every else cfg.max_pseudo_seconds
    plan = draws.pieces
    first = {p: draws.draws[0][p] for p in PARTS}  # the single-draw plan (counts, figures)
    pp_methods = [k for k in ("proposed", "individual_mix_pp", "mfcc") if k in ms]
    pp_jobs = {p: set().union(*(ms[k].jobs((p,)) for k in pp_methods)) for p in PARTS}
    pseudo = collect_pseudo(dataset, plan, cfg.main_seconds, pp_jobs, fns,
                            batch_size=cfg.batch_size, max_seconds=max_pseudo_seconds,
                            max_segments=cfg.max_segments, activity=activity, progress=progress,
                            twins=cfg.twins)
    timing["embed_pseudo_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    knn = dict(k=cfg.k, seed=cfg.seed, audible_only=cfg.audible_only)
    main = pieces[cfg.main_seconds]
    table1 = {k: {_key(s): music_id(pieces[s], ms[k], **knn) for s in t1_lengths[k]}
              for k in t1_methods}
    t2_name = {k: "individual_mix" if k == "individual_mix_pp" else k for k in pp_methods}
    hits: dict[str, dict[str, dict[int, list[int]]]] = {}
    if every:  # one plan: the figure, and its error over label tracks
        hits = {t2_name[k]: pseudo_separation_hits(pseudo, ms[k], **knn) for k in pp_methods}
        table2_spread = {k: {p: label_spread(h) for p, h in row.items()} for k, row in hits.items()}
        per_draw = {k: {p: [sp["mean"]] for p, sp in row.items()} for k, row in table2_spread.items()}
    else:
        per_draw = {t2_name[k]: pseudo_separation_draws(pseudo, ms[k], draws, **knn)
                    for k in pp_methods}
        table2_spread = {k: {p: spread(v) for p, v in row.items()} for k, row in per_draw.items()}
    table2 = {k: {p: sp["mean"] for p, sp in row.items()} for k, row in table2_spread.items()}
    t3, t3_counts = stem_identification_table(main, "csn", seed=cfg.seed)
    t3_taken_for = stem_identification_confusion(main, "csn", seed=cfg.seed)
    corr = dict(seed=cfg.seed, max_segments=cfg.max_matrix_segments)
    pairs = [("proposed", "proposed_stem", "proposed"),
             ("individual", "individual_clean", "individual_mix"),
             ("mfcc", "mfcc_stem", "mfcc")]
    table4 = {name: stem_mix_correlation(main, ms[a], ms[b], audible_only=cfg.audible_only,
                                         **corr)
              for name, a, b in pairs if a in ms and b in ms}
    table5 = {k: cross_correlation(main, ms[k], audible_only=cfg.audible_only, **corr)
              for k in ("proposed", "individual_clean", "individual_mix") if k in ms}
    aud = cfg.audible_only
    dims = {"proposed_mix": effective_dimension(main, ms["proposed"], audible_only=aud),
            "proposed_mix_all": effective_dimension(main, ms["proposed"], audible_only=False),
            "proposed_stem": effective_dimension(main, ms["proposed_stem"], audible_only=True)}
    for k in ("individual_mix", "individual_clean", "shape_stem"):
        if k in ms:  # a clean stem is measured where it sounds; the mix as the report's rule says
            stem = ms[k].spaces[PARTS[0]].source == "stem"
            dims[k] = effective_dimension(main, ms[k], audible_only=aud or stem)
    presence = {"stem": stem_presence(main, "csn", norm_bias),
                "mix": mix_presence(main, "csn", norm_bias),
                "rule": "norm_bias" if norm_bias is not None else "half_of_largest_norm"}
    timing["tables_s"] = time.perf_counter() - t0

    results = {
        "tables": {"table1": table1, "table2": table2, "table3": {"proposed": t3},
                   "table3_taken_for": t3_taken_for,
                   "table4": table4, "table5": table5, "table2_spread": table2_spread,
                   "table2_draws": per_draw, **({"table2_labels": hits} if every else {})},
        # what Table 2 ran: the plan and the settings it changes (written into the config)
        "table2_plan": {"plan": "every" if every else "drawn",
                        "draws": len(draws.draws), "max_pseudo_seconds": max_pseudo_seconds},
        "effective_dimension": dims,
        "presence": presence,
        "counts": {
            "tracks": len(tracks),
            "segments": {_key(s): len(pieces[s]) for s in cfg.seconds},
            "audible_segments": {_key(cfg.main_seconds): dict(zip(
                PARTS, main.active.sum(axis=1).tolist(), strict=True))},
            "table3_segments": t3_counts,
            "pseudo_pieces": {p: len(first[p]) for p in PARTS},
            "pseudo_labels": {p: len({plan[i].label for i in first[p]}) for p in PARTS},
            "pseudo_segments": {p: len(pseudo[p]) if p in pseudo else 0 for p in PARTS},
            "pseudo_tempo_mismatches": {
                p: tempo_mismatches(dataset.tracks, [plan[i] for i in first[p]])
                for p in PARTS},
            "table2_draws": len(draws.draws),
            "pseudo_pieces_all_draws": {p: sum(pp.part == p for pp in plan) for p in PARTS},
        },
        "timing": timing,
        "pseudo_plan": [asdict(pp) | {"draws": [d for d, ch in enumerate(draws.draws)
                                                 if pp.piece in ch[pp.part]]} for pp in plan],
    }
    fig_sets = {p: segs.subset(np.flatnonzero(np.isin(segs.group, first[p])))
                for p, segs in pseudo.items()}
    return Evaluation(results, pieces, fig_sets, tracks)


def _key(seconds: float) -> str:
    return f"{seconds:g}"


# --- files -------------------------------------------------------------------------------------


def _clean(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, for strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: our numbers beside the paper's (Slakh2100, 136 test pieces)."""
    t = report["tables"]
    cfg, counts = report["config"], report["counts"]
    ds = report["dataset"]
    lines = [
        "# Partwise evaluation report", "",
        f"- weights: `{report['weights']['name']}` (sha256 `{report['weights']['sha256'][:16]}`)",
        f"- dataset: `{ds.get('root', '?')}`, split `{ds.get('split', '?')}`: "
        f"{counts['tracks']} tracks evaluated, {ds.get('hours', '?')} h in the split",
        "- segments: " + ", ".join(f"{k} s: {v}" for k, v in counts["segments"].items()),
        f"- kNN k={cfg['k']}, seed {cfg['seed']}, audible segments only: {cfg['audible_only']}",
        f"- device {report['environment']['device']}, "
        f"{report['environment']['elapsed_s']:.0f} s", "",
        "Paper: Hashizume et al. 2025, Slakh2100 redux test set (136 pieces), full training.",
        "Accuracies in %; correlations are Pearson r. '-' = not available.", "",
    ]
    ind_cols = [k for k in ("individual_mix", "individual_clean", "mfcc") if k in t["table1"]]
    lines += ["## Table 1: music-ID kNN accuracy per subspace", ""]
    for s in t["table1"]["proposed"]:
        sec = float(s)
        header = ["part", "ours", "paper", *[NAMES[k] for k in ind_cols], "paper baseline*"]
        rows = [[p, _fmt(t["table1"]["proposed"][s].get(p)),
                 _fmt(paper.TABLE1_PROPOSED.get(sec, {}).get(p)),
                 *[_fmt(t["table1"][k].get(s, {}).get(p)) for k in ind_cols],
                 _fmt(paper.TABLE1_BASELINE.get(sec, {}).get(p))] for p in PARTS]
        rows.append(["mean", _fmt(mean(t["table1"]["proposed"][s])),
                     _fmt(mean(paper.TABLE1_PROPOSED.get(sec, {}))),
                     *[_fmt(mean(t["table1"][k].get(s, {}))) for k in ind_cols], ""])
        lines += [f"### {s} s segments", "", *_table(header, rows), ""]
    lines += ["*paper baseline: individual networks on Spleeter-separated signals. Our baselines "
              "run at every length only with `--full`. Chance is about "
              f"{_fmt(100.0 / max(1, counts['tracks']))} % (one track in {counts['tracks']}).", ""]

    t2 = t["table2"]
    sp2 = t.get("table2_spread", {})
    draws = cfg.get("draws", 1)
    cols2 = [k for k in ("individual_mix", "mfcc") if k in t2]
    if "table2_labels" in t:
        plan = ("Every pair of the split: each track that has the part as its label, mixed with "
                "every other track that has another part, whole pieces, scored once (on a split "
                f"with at most {cfg['n_labels']} label tracks per part, seeded draws would repeat "
                "the same few pieces). std: the standard error over label tracks (segments "
                "clustered by label); min-max: the per-label accuracies. `partwise-train compare` "
                "pairs two models label by label.")
    else:
        plan = (f"{cfg['n_labels']} labels x {cfg['per_label']} pseudo pieces per part (fewer "
                f"when the split is small), mean of {draws} seeded draws (std and min-max over "
                "the draws). Two models differ on a part when their means differ by more than "
                "about two stds.")
    if cfg.get("twins"):
        plan += (" Across timbres: every other pseudo piece of a label takes the label part from "
                 "its twin, the same notes in another program, font and effects.")
    lines += [f"## Table 2: pseudo-piece separation ({cfg['main_seconds']:g} s)", "",
              plan + " The target's own pseudo piece never votes. Chance is one label in "
              "`labels`; the paper's numbers are for 5 s segments.", ""]

    def spread_cells(k: str, p: str) -> list[str]:
        s = sp2.get(k, {}).get(p, {})
        return [_fmt(s.get("std")), f"{_fmt(s.get('min'))}-{_fmt(s.get('max'))}"]

    header = ["part", "ours", "std", "min-max", "paper (i)",
              *[h for k in cols2 for h in (NAMES[k], "std")], "paper (a)",
              "pieces", "labels", "cross-tempo"]
    rows = [[p, _fmt(t2["proposed"].get(p)), *spread_cells("proposed", p),
             _fmt(paper.TABLE2_PROPOSED[p]),
             *[c for k in cols2 for c in (_fmt(t2[k].get(p)), spread_cells(k, p)[0])],
             _fmt(paper.TABLE2_BASELINE[p]),
             str(counts["pseudo_pieces"][p]), str(counts["pseudo_labels"][p]),
             str(counts["pseudo_tempo_mismatches"][p])] for p in PARTS]
    rows.append(["mean", _fmt(mean(t2["proposed"])), "", "", _fmt(mean(paper.TABLE2_PROPOSED)),
                 *[c for k in cols2 for c in (_fmt(mean(t2[k])), "")], "", "", "", ""])
    lines += [*_table(header, rows), ""]

    t3 = t["table3"]["proposed"]
    lines += ["## Table 3: instrument identification (clean stem in, largest-norm subspace)", ""]
    rows = [[p, _fmt(t3.get(p)), _fmt(paper.TABLE3_PROPOSED[p]),
             str(counts["table3_segments"][p])] for p in PARTS]
    rows.append(["mean", _fmt(mean(t3)), _fmt(np.mean(list(paper.TABLE3_PROPOSED.values()))), ""])
    lines += [*_table(["part", "ours", "paper", "segments"], rows), "", "Chance is 20 %.", ""]
    taken = t.get("table3_taken_for")
    if taken:  # reports written before it have no such table
        lines += ["What each part's clean stems are taken for (% of its segments; the diagonal "
                  "is Table 3):", ""]
        rows = [[p, *[_fmt(taken[p][q]) for q in PARTS]] for p in PARTS if p in taken]
        lines += [*_table(["clean stem", *[f"as {q}" for q in PARTS]], rows), ""]

    lines += _dimension_lines(report)
    lines += _presence_lines(report)

    t4 = t["table4"]
    cols4 = [k for k in ("individual", "mfcc") if k in t4]
    lines += ["## Table 4: distance-matrix correlation, clean-stem input vs mix input", ""]
    rows = [[p, _fmt(t4["proposed"].get(p), 4), _fmt(paper.TABLE4_PROPOSED[p], 4),
             *[_fmt(t4[k].get(p), 4) for k in cols4]] for p in PARTS]
    header = ["part", "ours", "paper (w/ psd)", *[f"{k} (stem vs mix)" for k in cols4]]
    lines += [*_table(header, rows), ""]

    t5 = t["table5"]
    cols5 = list(t5)
    lines += ["## Table 5: correlation between subspaces' distance matrices", "",
              "Low is good (each subspace its own similarity). The paper reports these as a "
              "figure; the individual networks on clean stems are its reference.", ""]
    pairs = list(t5["proposed"])
    rows = [[pair, *[_fmt(t5[k].get(pair), 4) for k in cols5]] for pair in pairs]
    rows.append(["mean", *[_fmt(mean(t5[k]), 4) for k in cols5]])
    lines += [*_table(["pair", *[NAMES[k] for k in cols5]], rows), ""]

    if report.get("plots"):
        lines += ["## Figures", ""]
        lines += [f"![{name}]({name})" for name in report["plots"]]
        lines.append("")
    lines += ["## Protocol notes", "",
              "- Segments do not overlap; a part is scored only where it is audible (loader "
              "activity threshold), as target and as reference, when `audible_only` is set.",
              "- Pseudo pieces mix one part of a label track with all other parts of another "
              "track of the same tempo class, or the nearest class when the split has too few.",
              "- Table 4 compares subspace c on both sides; correlations use each pair once; "
              "Table 5 uses the segments where both parts are audible.",
              f"- Pseudo pieces are cut to at most {cfg['max_pseudo_seconds']} s "
              "(None: whole pieces, as in the paper).",
              "- MFCC statistics: mean and std of "
              f"{cfg['n_mfcc']} MFCCs, z-scored per column over the evaluated segments, from "
              f"a fixed front end whatever the model's ({_front_end_words(MFCC_FRONT_END)}).", ""]
    return "\n".join(lines)


# the MFCC baseline's analysis (at the model's sample rate): window, hop and bands as the
# common MFCC tools default to
MFCC_FRONT_END = AudioConfig()


def mfcc_front_end(model_audio: AudioConfig) -> AudioConfig:
    """The MFCC baseline's front end for a model: :data:`MFCC_FRONT_END` at its sample rate."""
    return dataclasses.replace(MFCC_FRONT_END, sample_rate=model_audio.sample_rate)


def _front_end_words(a: AudioConfig) -> str:
    words = f"window {a.n_fft}, hop {a.hop_length}, {a.n_mels} mel bands from {a.f_min:g} Hz"
    return words + f", and {a.n_mels} pitch bands A0-C8" if a.pitch else words


DIM_NAMES = {
    "proposed_mix": "CSN, mix (audible)",
    "proposed_mix_all": "CSN, mix (all segments)",
    "proposed_stem": "CSN, clean stem",
    "individual_mix": "individual nets, mix",
    "individual_clean": "individual nets, clean stem (pre-training targets)",
    "shape_stem": "reference: clean stem's spectral shape",
}


def _dimension_lines(report: dict[str, Any]) -> list[str]:
    dims = report.get("effective_dimension")
    if not dims:
        return []
    lines = ["## Effective dimension of each part's space", "",
             "Participation ratio (sum of the covariance eigenvalues)^2 / (sum of their squares) "
             "over the main-length segments: 1 = every segment on one line (the space carries "
             "one number, e.g. loudness), 128 = variance spread evenly over the subspace. The "
             "reference column is no model: the dB mel spectrum of each clean stem averaged over "
             "time, less its level, as a measure of how many spectral directions the part's "
             "stems in this split vary along (a part whose stems vary little gives its subspace "
             "little to spread over).", ""]
    cols = [k for k in DIM_NAMES if k in dims]
    rows = [[p, *[_fmt(dims[k].get(p)) for k in cols]] for p in PARTS]
    return lines + [*_table(["part", *[DIM_NAMES[k] for k in cols]], rows), ""]


def _presence_lines(report: dict[str, Any]) -> list[str]:
    pres = report.get("presence")
    if not pres:
        return []
    rule = ("sigmoid(log norm + trained bias) > 0.5, as the app shows it"
            if pres.get("rule") == "norm_bias" else "norm at least half the largest (no biases)")
    lines = ["## Presence: which parts does the model hear?", "",
             f"Present means {rule}. Clean stems: `largest` = Table 3, `own` = the stem's part "
             "judged present, `others absent` = the four other parts judged absent, `accuracy` = "
             "all five decisions. Mixes: against the loader's activity.", ""]
    st, mx = pres["stem"], pres["mix"]
    rows = [[p, *[_fmt(st[p].get(k)) for k in ("largest", "own", "others_absent", "accuracy")],
             *[_fmt(mx[p].get(k)) for k in ("accuracy", "recall", "false_present")]]
            for p in PARTS]
    header = ["part", "stem: largest", "stem: own", "stem: others absent", "stem: accuracy",
              "mix: accuracy", "mix: recall", "mix: false present"]
    return lines + [*_table(header, rows), ""]


def run(data: str | os.PathLike, weights: str | os.PathLike, out: str | os.PathLike,
        individual: str | os.PathLike | None = None, config: EvalConfig | None = None,
        device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate a weights file on a dataset split; write report.json, report.md and plots."""
    config = config or EvalConfig()
    from trainer.data.dataset import SlakhDataset

    start = time.perf_counter()
    out = Path(out)
    emb = Embedder.from_file(weights, device=device, batch_size=config.batch_size)
    if emb.model.cfg.out_dim != EMBED_DIM:
        raise WeightsError(f"{weights}: outputs {emb.model.cfg.out_dim} values, not the "
                           f"{EMBED_DIM} of a CSN (an individual network goes to --individual)")
    audio = emb.audio
    cache = MelCache()
    # the baseline's front end is the standard one whatever the model's, so that a model's
    # own front end (its mel bands, its window) does not move the bar it is measured against
    front = mfcc_front_end(audio)
    fns: dict[str, EmbedFn] = {"csn": emb.embed_clips,
                               "mfcc": MFCCStats(front, config.n_mfcc, emb.device, cache),
                               "shape": SpectralShape(front, emb.device, cache)}
    weights_info: dict[str, Any] = {"name": Path(weights).name, "sha256": emb.sha256,
                                    "spec": emb.spec.to_dict()}
    if individual is not None:
        nets = IndividualNets(individual, device=emb.device, batch_size=config.batch_size,
                              cache=cache)
        check_rates({"csn": audio.sample_rate, "individual": nets.audio.sample_rate})
        fns["ind"] = nets.concat
        fns.update({f"ind_{p}": nets.part_fn(p) for p in PARTS})
        weights_info["individual"] = {"folder": str(nets.folder), "sha256": nets.sha256}
    dataset = SlakhDataset(data, config.split, sample_rate=audio.sample_rate)
    if len(dataset) == 0:
        raise ValueError(f"{Path(data) / config.split}: no tracks in this split")
    log.info("evaluating %s on %s (%d tracks) on %s", Path(weights).name, dataset, len(dataset),
             emb.device)
    norm_bias = read_card(weights).get("card", {}).get("norm_bias")
    ev = evaluate(dataset, fns, config, norm_bias=norm_bias, progress=progress)
    summary = dataset.summary() if hasattr(dataset, "summary") else {}
    for pp in ev.results["pseudo_plan"]:
        pp["label_name"] = dataset.tracks[pp["label"]].name
        pp["other_name"] = dataset.tracks[pp["other"]].name
    weights_info["norm_bias"] = norm_bias
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        # the settings Table 2 ran with: the resolved plan (the one asked for beside it)
        "config": asdict(config) | ev.results.pop("table2_plan") | {"plan_asked": config.plan},
        "weights": weights_info,
        "dataset": {"root": str(data), "sample_rate": dataset.sample_rate, **summary,
                    "evaluated": [dataset.tracks[i].name for i in ev.tracks]},
        **ev.results,
        "environment": {"device": str(emb.device), "torch": torch.__version__,
                        "python": platform.python_version()},
    }
    out.mkdir(parents=True, exist_ok=True)
    if config.plots:
        from trainer.evaluate.plots import write_plots

        names = [dataset.tracks[i].name for i in range(len(dataset))]
        report["plots"] = write_plots(out, ev, names, config.main_seconds, seed=config.seed)
    report["environment"]["elapsed_s"] = time.perf_counter() - start
    report = _clean(report)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    log.info("wrote %s and %s", out / "report.json", out / "report.md")
    return report
