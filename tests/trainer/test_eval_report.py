"""End to end: a tiny generated dataset and random-init weights -> the report folder."""

import json

import numpy as np
import pytest
import torch

from model.audio import AudioConfig
from model.network import CSN, ModelSpec, NetConfig
from model.parts import PARTS
from model.weights import save_weights
from tests.trainer import evalfakes as F
from trainer.evaluate.baselines import (
    IndividualNets,
    MelCache,
    MFCCStats,
    SpectralShape,
    model_embed_fn,
)
from trainer.evaluate.cli import main
from trainer.evaluate.report import EvalConfig, evaluate, markdown

AUDIO = AudioConfig(sample_rate=16000, n_mels=32)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    from trainer.data.synth import build_dataset

    root = tmp_path_factory.mktemp("evalset")
    build_dataset(root, 8, seed=3, song_seconds=8, splits=(0, 0, 1), workers=1,
                  sample_rate=AUDIO.sample_rate)
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    spec = ModelSpec(net=NetConfig(widths=(4, 8, 8, 16, 16), n_mels=32), audio=AUDIO)
    save_weights(out / "best.safetensors", CSN(spec.net).eval(), spec)
    ispec = ModelSpec(net=NetConfig(widths=(4, 4, 8, 8, 8), n_mels=32, out_dim=128), audio=AUDIO)
    for p in PARTS:
        save_weights(out / "individual" / f"{p}.safetensors", CSN(ispec.net).eval(), ispec)
    return out


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, float):
        yield obj


def test_cli_writes_the_report_and_repeats_it_exactly(dataset_root, run_dir, tmp_path, capsys):
    args = ["--data", str(dataset_root), "--weights", str(run_dir / "best.safetensors"),
            "--seconds", "2", "--labels", "3", "--per-label", "2", "--no-progress"]
    ind = ["--individual", str(run_dir / "individual")]
    assert main([*args, *ind, "--main-seconds", "4", "--out", str(tmp_path / "a")]) == 0
    assert "Table 2 (proposed)" in capsys.readouterr().out
    for name in ("report.json", "report.md", "maps.png", "stem_norms.png", "distances.png",
                 "pseudo_maps.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    t = rep["tables"]
    assert set(t["table1"]) == {"proposed", "individual_mix", "individual_clean", "mfcc"}
    assert set(t["table1"]["proposed"]) == {"2", "4"}  # the main length joins Table 1
    for name in ("table1", "table2", "table3"):
        vals = list(_numbers(t[name]))
        assert vals and all(0.0 <= v <= 100.0 for v in vals), name
    for name in ("table4", "table5"):
        assert all(-1.0 - 1e-9 <= v <= 1.0 + 1e-9 for v in _numbers(t[name])), name
    assert len(rep["weights"]["sha256"]) == 64
    assert rep["dataset"]["tracks"] == 8 and len(rep["dataset"]["evaluated"]) == 8
    assert rep["counts"]["segments"] == {"2": 8 * 4, "4": 8 * 2}
    assert sum(rep["counts"]["pseudo_pieces"].values()) <= 5 * 3 * 2
    # Table 2 over 10 seeded draws: the mean is the table, the spread beside it
    sp = t["table2_spread"]["proposed"]
    assert rep["config"]["draws"] == 10 and all(s["n"] == 10 for s in sp.values() if s["n"])
    for p, s in sp.items():
        if s["n"]:
            assert s["min"] <= t["table2"]["proposed"][p] <= s["max"] and s["std"] >= 0.0
            assert len(t["table2_draws"]["proposed"][p]) == 10
    assert sum(rep["counts"]["pseudo_pieces_all_draws"].values()) >= sum(
        rep["counts"]["pseudo_pieces"].values())
    dims = rep["effective_dimension"]
    assert set(dims) == {"proposed_mix", "proposed_mix_all", "proposed_stem", "individual_mix",
                         "individual_clean", "shape_stem"}
    assert all(1.0 - 1e-6 <= v <= 128.0 for v in _numbers(dims))
    assert set(rep["presence"]["stem"]["bass"]) == {"largest", "own", "others_absent", "accuracy"}
    assert rep["presence"]["rule"] == "half_of_largest_norm"  # random weights: no trained biases
    md = (tmp_path / "a" / "report.md").read_text()
    assert "| drums |" in md and "95.80" in md  # the paper's Table 2 beside ours
    assert "mean of 10 seeded draws" in md and "## Effective dimension" in md
    assert "## Presence" in md
    # fixed seeds: a second run gives the same numbers (here without the baselines)
    assert main([*args, "--main-seconds", "4", "--out", str(tmp_path / "b"), "--no-plots"]) == 0
    t2 = json.loads((tmp_path / "b" / "report.json").read_text())["tables"]
    assert t2["table1"]["proposed"] == t["table1"]["proposed"]
    assert t2["table2"]["proposed"] == t["table2"]["proposed"]
    assert t2["table2"]["mfcc"] == t["table2"]["mfcc"]
    assert t2["table3"] == t["table3"] and t2["table4"]["proposed"] == t["table4"]["proposed"]


def test_cli_errors_name_the_problem(dataset_root, run_dir, tmp_path, capsys):
    code = main(["--data", str(dataset_root), "--weights", str(tmp_path / "none.safetensors"),
                 "--out", str(tmp_path / "r")])
    assert code == 1 and "none.safetensors" in capsys.readouterr().err
    code = main(["--data", str(tmp_path), "--weights", str(tmp_path / "none.safetensors"),
                 "--out", str(tmp_path / "r")])
    assert code == 1
    code = main(["--data", str(dataset_root), "--weights",
                 str(run_dir / "individual" / "bass.safetensors"), "--out", str(tmp_path / "r")])
    assert code == 1 and "--individual" in capsys.readouterr().err
    code = main(["--data", str(tmp_path), "--weights", str(run_dir / "best.safetensors"),
                 "--out", str(tmp_path / "r")])
    assert code == 1 and "split" in capsys.readouterr().err


def test_evaluate_with_oracles_scores_perfectly():
    data = F.ToneDataset(n_tracks=6, seconds=12.0)
    fns = {"csn": F.oracle, "mfcc": F.leaky}
    cfg = EvalConfig(seconds=(3.0, 6.0), main_seconds=3.0, n_labels=3, per_label=2, plots=False)
    ev = evaluate(data, fns, cfg, activity=F.activity)
    t = ev.results["tables"]
    assert t["table1"]["proposed"]["3"] == {p: 100.0 for p in PARTS}
    assert t["table2"]["proposed"] == {p: 100.0 for p in PARTS}
    assert t["table3"]["proposed"] == {p: 100.0 for p in PARTS}
    assert t["table3_taken_for"]["bass"] == {p: 100.0 * (p == "bass") for p in PARTS}
    assert t["table4"]["proposed"] == pytest.approx({p: 1.0 for p in PARTS})
    assert "individual_mix" not in t["table1"]  # no individual networks given
    md = markdown({**ev.results, "config": vars(cfg), "dataset": {}, "plots": [],
                   "weights": {"name": "oracle", "sha256": "0" * 64},
                   "environment": {"device": "cpu", "elapsed_s": 0.0}})
    assert "| drums | 100.00 | 0.00 | 100.00-100.00 | 95.80 |" in md
    assert "| guitar | 0.00 | 0.00 | 0.00 | 100.00 | 0.00 |" in md  # what each stem is taken for
    assert t["table2_spread"]["proposed"]["bass"] == {"mean": 100.0, "std": 0.0, "min": 100.0,
                                                      "max": 100.0, "n": 10}
    # the oracle's subspaces: one-hots of 6 tracks, equally often -> 5 directions
    assert ev.results["effective_dimension"]["proposed_mix"] == pytest.approx(
        {p: 5.0 for p in PARTS})
    assert ev.results["presence"]["stem"]["guitar"]["accuracy"] == 100.0


def test_full_protocol_runs_the_baselines_at_every_length():
    data = F.ToneDataset(n_tracks=5, seconds=12.0, absent={(1, 3)})
    fns = {"csn": F.oracle, "mfcc": F.leaky, "ind": F.oracle,
           **{f"ind_{p}": F.per_part(j) for j, p in enumerate(PARTS)}}
    cfg = EvalConfig(seconds=(3.0, 6.0), main_seconds=3.0, n_labels=2, per_label=2, plots=False,
                     baselines_all_lengths=True, max_pseudo_seconds=None)
    t = evaluate(data, fns, cfg, activity=F.activity).results["tables"]
    for k in ("individual_mix", "individual_clean"):
        assert t["table1"][k]["3"] == {p: 100.0 for p in PARTS}
        assert set(t["table1"][k]) == {"3", "6"}
    assert t["table2"]["individual_mix"] == {p: 100.0 for p in PARTS}
    assert t["table4"]["individual"] == pytest.approx({p: 1.0 for p in PARTS})
    # the five separate networks on clean stems are the Table 5 reference
    assert set(t["table5"]) == {"proposed", "individual_clean", "individual_mix"}


def test_model_embed_fn_is_the_apps_path_and_restores_training_mode(run_dir):
    from model.embedder import Embedder
    from model.network import ModelSpec

    net = CSN(NetConfig(widths=(4, 8, 8, 16, 16), n_mels=32)).train()
    fn = model_embed_fn(net, AUDIO, "cpu", batch_size=3)
    clips = np.random.default_rng(0).normal(size=(5, 16000)).astype(np.float32) * 0.1
    out = fn(clips)
    assert out.shape == (5, 640) and out.dtype == np.float32 and net.training
    app = Embedder(net, ModelSpec(net=net.cfg, audio=AUDIO), device="cpu").embed_clips(clips)
    net.train()
    np.testing.assert_allclose(out, app, atol=1e-5)
    assert fn(clips[:0]).shape == (0, 640)
    cache = MelCache()
    mfcc = MFCCStats(AUDIO, n_mfcc=13, device="cpu", cache=cache)(clips)
    assert mfcc.shape == (5, 26)
    ind = IndividualNets(run_dir, device="cpu", cache=cache)
    both = ind.concat(clips)
    assert both.shape == (5, 640)
    assert np.allclose(both[:, 128:256], ind.part_fn("bass")(clips), atol=1e-5)


def test_spectral_shape_ignores_level_and_tells_timbres_apart():
    # two colours of noise (every band above the front end's dB floor), one at two levels
    white = np.random.default_rng(0).normal(size=16001)
    low = 0.05 * np.convolve(white, np.ones(8) / 8, mode="same")[:16000]
    high = 0.05 * np.diff(white)
    clips = np.stack([low, 4 * low, high]).astype(np.float32)
    shape = SpectralShape(AUDIO, device="cpu")(clips)
    assert shape.shape == (3, AUDIO.n_mels)
    np.testing.assert_allclose(shape.mean(axis=1), 0.0, atol=1e-5)  # the level is taken out
    assert np.abs(shape[0] - shape[1]).max() < 0.05 * np.abs(shape[0] - shape[2]).max()
    assert np.argmax(shape[0]) < np.argmax(shape[2])  # the high noise's peak band is higher
    assert SpectralShape(AUDIO, device="cpu")(clips[:0]).shape == (0, AUDIO.n_mels)


def test_reference_dimension_counts_the_stems_spectral_directions():
    """The reference column is the participation ratio of the clean stems' spectral shapes:
    every segment of a tone track sounds the same, so a part's six tracks give at most five
    directions however the tones lie."""
    data = F.ToneDataset(n_tracks=6, seconds=12.0)
    shape = SpectralShape(AudioConfig(sample_rate=data.sample_rate, n_mels=32), device="cpu")
    cfg = EvalConfig(seconds=(3.0,), main_seconds=3.0, n_labels=3, per_label=2, plots=False)
    ev = evaluate(data, {"csn": F.oracle, "shape": shape}, cfg, activity=F.activity)
    ref = ev.results["effective_dimension"]["shape_stem"]
    assert set(ref) == set(PARTS)
    assert all(1.0 < v <= 5.0 + 1e-6 for v in ref.values())
    md = markdown({**ev.results, "config": vars(cfg), "dataset": {}, "plots": [],
                   "weights": {"name": "oracle", "sha256": "0" * 64},
                   "environment": {"device": "cpu", "elapsed_s": 0.0}})
    assert "reference: clean stem's spectral shape" in md
    # without the function the column is left out, the rest unchanged
    ev2 = evaluate(data, {"csn": F.oracle}, cfg, activity=F.activity)
    assert "shape_stem" not in ev2.results["effective_dimension"]
    assert ev2.results["tables"]["table2"] == ev.results["tables"]["table2"]


@pytest.mark.gpu
def test_cuda_embeddings_match_cpu():
    net = CSN(NetConfig(widths=(4, 8, 8, 16, 16), n_mels=32)).eval()
    clips = np.random.default_rng(1).normal(size=(4, 16000)).astype(np.float32) * 0.1
    cpu = model_embed_fn(net, AUDIO, "cpu")(clips)
    gpu = model_embed_fn(net.to("cuda"), AUDIO, "cuda")(clips)
    assert np.allclose(cpu, gpu, atol=1e-3)
    mfcc = MFCCStats(AUDIO, device="cuda")(clips)
    assert np.allclose(mfcc, MFCCStats(AUDIO, device="cpu")(clips), atol=1e-3)


def test_the_mfcc_baseline_does_not_follow_the_models_front_end(dataset_root, tmp_path, monkeypatch):
    """A model with its own mel bands and window is measured against MFCCs from the standard
    front end at its sample rate, the same for every model."""
    from trainer.evaluate import report

    own = AudioConfig(sample_rate=16000, n_mels=64, n_fft=1024)
    assert report.mfcc_front_end(own) == AudioConfig(sample_rate=16000)
    torch.manual_seed(1)
    spec = ModelSpec(net=NetConfig(widths=(4, 8, 8, 16, 16), n_mels=64), audio=own)
    save_weights(tmp_path / "other.safetensors", CSN(spec.net).eval(), spec)
    seen = []

    class Spy(MFCCStats):
        def __init__(self, audio, *a, **kw):
            seen.append(audio)
            super().__init__(audio, *a, **kw)

    monkeypatch.setattr(report, "MFCCStats", Spy)
    assert main(["--data", str(dataset_root), "--weights", str(tmp_path / "other.safetensors"),
                 "--seconds", "2", "--labels", "3", "--per-label", "2", "--no-progress",
                 "--no-plots", "--out", str(tmp_path / "b")]) == 0
    assert seen == [AudioConfig(sample_rate=16000)]
    assert "window 2048, hop 512, 128 mel bands" in (tmp_path / "b" / "report.md").read_text()


def test_a_small_split_is_tested_on_every_pair():
    """With no more label tracks than labels asked for, every draw would hold every label: the
    plan becomes every label with every other track, whole pieces, once, with its error over
    the label tracks."""
    from trainer.evaluate.segments import every_pair

    data = F.ToneDataset(n_tracks=5, seconds=12.0, absent={(1, 3)})
    assert every_pair(data.tracks, PARTS, 5, "auto") and not every_pair(data.tracks, PARTS, 4, "auto")
    assert every_pair(data.tracks, PARTS, 2, "every") and not every_pair(data.tracks, PARTS, 9, "drawn")
    with pytest.raises(ValueError, match="plan"):
        every_pair(data.tracks, PARTS, 5, "some")
    with pytest.raises(ValueError, match="plan"):
        EvalConfig(plan="some")
    fns = {"csn": F.leaky, "mfcc": F.leaky}
    cfg = EvalConfig(seconds=(3.0,), main_seconds=3.0, plots=False)  # 10 labels asked, 5 tracks
    res = evaluate(data, fns, cfg, activity=F.activity).results
    assert res["table2_plan"] == {"plan": "every", "draws": 1, "max_pseudo_seconds": None}
    t, counts = res["tables"], res["counts"]
    # every label with each of the 4 other tracks; track 1 has no guitar
    assert counts["pseudo_pieces"] == {p: (4 if p == "guitar" else 5) * 4 for p in PARTS}
    assert counts["table2_draws"] == 1
    for p in PARTS:
        hits = t["table2_labels"]["proposed"][p]
        right, n = sum(h[0] for h in hits.values()), sum(h[1] for h in hits.values())
        sp = t["table2_spread"]["proposed"][p]
        assert sp["mean"] == pytest.approx(100 * right / n) == t["table2"]["proposed"][p]
        assert sp["n"] == len(hits) and sp["min"] <= sp["mean"] <= sp["max"]
        assert t["table2_draws"]["proposed"][p] == [sp["mean"]]
    # the same votes as the drawn plan's scoring of the same pieces
    drawn = EvalConfig(seconds=(3.0,), main_seconds=3.0, plots=False, plan="drawn", n_labels=5,
                       per_label=4, draws=1, max_pseudo_seconds=None)
    res2 = evaluate(data, fns, drawn, activity=F.activity).results
    assert res2["table2_plan"]["plan"] == "drawn" and "table2_labels" not in res2["tables"]
    assert res2["tables"]["table2"]["proposed"] == pytest.approx(t["table2"]["proposed"])
    md = markdown({**res, "config": vars(cfg), "dataset": {}, "plots": [],
                   "weights": {"name": "leaky", "sha256": "0" * 64},
                   "environment": {"device": "cpu", "elapsed_s": 0.0}})
    assert "Every pair of the split" in md and "standard error over label tracks" in md
