"""Presence calibration: the threshold search, the inputs it is fitted on, and the command."""

import json

import numpy as np
import pytest
import torch

from model.audio import AudioConfig
from model.network import CSN, ModelSpec, NetConfig
from model.parts import N_PARTS
from model.weights import load_weights, save_weights
from trainer.calibrate import (
    CalibrationSet,
    best_threshold,
    build_inputs,
    calibrate,
    main,
    presence_scores,
)

AUDIO = AudioConfig(sample_rate=16000, n_mels=32)


def test_best_threshold_separates_two_clusters():
    rng = np.random.default_rng(0)
    absent = rng.normal(-3.0, 0.3, 300)
    present = rng.normal(0.5, 0.3, 100)
    t, bal = best_threshold(np.r_[absent, present], np.r_[np.zeros(300, bool), np.ones(100, bool)])
    assert absent.max() < t < present.min()
    assert bal == 1.0


def test_best_threshold_balances_the_rare_class():
    # 1,000 absent spread over [0, 1), 10 present at 0.9..0.99: plain accuracy would call all
    # absent; balanced accuracy puts the cut just below the present ones
    x = np.r_[np.linspace(0, 0.89, 1000), np.linspace(0.9, 0.99, 10)]
    y = np.r_[np.zeros(1000, bool), np.ones(10, bool)]
    t, bal = best_threshold(x, y)
    assert 0.89 < t < 0.9
    assert bal == 1.0
    with pytest.raises(ValueError):
        best_threshold(x, np.ones_like(y))


def test_calibrated_bias_beats_a_wrong_one():
    rng = np.random.default_rng(1)
    truth = rng.random((500, N_PARTS)) < 0.5
    log_norms = np.where(truth, 1.0, -1.0) + rng.normal(0, 0.4, truth.shape) + np.arange(N_PARTS)
    cal = CalibrationSet(log_norms, truth, np.array(["mix"] * 500))
    bias = calibrate(cal)
    np.testing.assert_allclose(-bias, np.arange(N_PARTS), atol=0.25)
    good = presence_scores(cal, bias)
    bad = presence_scores(cal, np.zeros(N_PARTS))
    assert all(good[p]["all"] > 95 for p in good if p != "solo_all_five_right")
    assert bad["others"]["all"] < 60  # offset 4: a zero bias calls "others" present everywhere
    truth[:, 2] = False  # a part that never plays keeps the bias it had
    kept = calibrate(CalibrationSet(log_norms, truth, cal.kind), fallback=[7.0] * N_PARTS)
    assert kept[2] == 7.0 and kept[0] != 7.0
    with pytest.raises(ValueError):
        calibrate(CalibrationSet(log_norms, truth, cal.kind))


def test_inputs_mix_solo_and_subsets_with_their_truth():
    sr, n = 8000, 8000 * 12
    t = np.arange(n) / sr
    parts = np.zeros((N_PARTS, n), np.float32)
    parts[0] = 0.1 * np.sin(2 * np.pi * 110 * t)
    parts[2] = 0.1 * np.sin(2 * np.pi * 440 * t)
    parts[2, : n // 2] = 0.0  # the piano enters half way
    clips, truth, kind = build_inputs([parts], sr, 3.0, 4, np.random.default_rng(0),
                                      level_db=-24.0, gain_db=0.0, threshold_db=-50.0)
    assert clips.shape[1] == 3 * sr and len(clips) == len(truth) == len(kind)
    assert set(kind) == {"mix", "solo", "subset"}
    mixes = truth[kind == "mix"]
    assert mixes[:, 0].all() and not mixes[:, [1, 3, 4]].any()
    assert mixes[:, 2].any() and not mixes[:, 2].all()
    solo = truth[kind == "solo"]
    assert (solo.sum(1) == 1).all()
    # solo parts are levelled to -24 dBFS RMS
    rms_db = 10 * torch.log10(clips[torch.from_numpy(kind == "solo")].pow(2).mean(1))
    np.testing.assert_allclose(rms_db.numpy(), -24.0, atol=0.1)
    assert (truth[kind == "subset"].sum(1) >= 1).all()


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    from trainer.data.synth import build_dataset

    root = tmp_path_factory.mktemp("calset")
    build_dataset(root, 8, seed=5, song_seconds=8, splits=(0, 0.5, 0.5), workers=1,
                  sample_rate=AUDIO.sample_rate)
    return root


def test_command_writes_a_calibrated_copy(dataset_root, tmp_path, capsys):
    torch.manual_seed(0)
    spec = ModelSpec(net=NetConfig(widths=(4, 8, 8, 16, 16), n_mels=32), audio=AUDIO)
    src = tmp_path / "m.safetensors"
    save_weights(src, CSN(spec.net).eval(), spec, card={"norm_bias": [0.0] * N_PARTS})
    out = tmp_path / "cal.safetensors"
    assert main([str(src), "--data", str(dataset_root), "--out", str(out), "--per-track", "2",
                 "--score-split", "test"]) == 0
    w = load_weights(out)
    card = json.loads(out.with_suffix(".json").read_text())["card"]
    assert card["norm_bias_trained"] == [0.0] * N_PARTS
    assert len(card["norm_bias"]) == N_PARTS and card["norm_bias"] != [0.0] * N_PARTS
    assert card["presence_calibration"]["inputs"]["mix"] > 0
    held = card["presence_calibration"]["held_out"]
    assert held["data"] == [f"{dataset_root.name}/test"] and held["inputs"]["solo"] > 0
    assert set(held["balanced_accuracy_calibrated"]) >= {"drums", "bass"}
    for a, b in zip(w.model.state_dict().values(), load_weights(src).model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    printed = capsys.readouterr().out
    assert "balanced accuracy" in printed and "held out (test)" in printed
    assert main([str(src), "--data", str(dataset_root), "--out", str(src)]) == 1


def test_partwise_train_dispatches_and_says_what_it_has(capsys):
    from trainer.cli import main as train_main

    assert train_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "calibrate" in out and "arrange-pop909" in out
    assert train_main([]) == 2
    assert train_main(["nonsense"]) == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err
    assert train_main(["calibrate", "/nonexistent.safetensors", "--data", "/nowhere", "--out",
                       "/tmp/never.safetensors"]) == 1
