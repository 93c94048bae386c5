"""``partwise-train leak``: the figures of one draw, their spread over draws, and the command."""

import json
import math

import numpy as np
import pytest
import torch

from model.audio import AudioConfig
from model.network import CSN, ModelSpec, NetConfig
from model.parts import N_PARTS, PARTS
from model.weights import save_weights
from trainer.evaluate.leak import draw_figures, main, summarize

AUDIO = AudioConfig(sample_rate=16000, n_mels=32)
PIANO = PARTS.index("piano")


def _rows(part_value, rest_value):
    """Embeddings of one triplet whose piano block holds ``part_value(piece)`` in its first
    coordinate and ``rest_value(piece)`` in its second, for the pieces (A,B) (A,C) (D,B)."""
    out = torch.zeros(3, N_PARTS * 128)
    for i, (part, rest) in enumerate((("A", "B"), ("A", "C"), ("D", "B"))):
        out[i, PIANO * 128] = part_value[part]
        out[i, PIANO * 128 + 1] = rest_value[rest]
    return out


def test_a_subspace_that_hears_only_its_part_leaks_nothing():
    emb = torch.cat([_rows({"A": 0.0, "D": 3.0}, {"B": 0.0, "C": 0.0}) for _ in range(4)])
    f = draw_figures(emb, np.full(4, PIANO))
    assert set(f) == {"piano"}
    assert f["piano"]["d_part"] == 0.0 and f["piano"]["d_rest"] == pytest.approx(3.0)
    assert f["piano"]["leak"] == pytest.approx(0.0)
    assert f["piano"]["triplet_acc"] == 100.0


def test_a_subspace_that_hears_the_rest_more_than_its_part_leaks_above_one():
    # the part moves the piano block by 1, the rest by 4: sharing the rest brings pieces nearer
    emb = torch.cat([_rows({"A": 0.0, "D": 1.0}, {"B": 0.0, "C": 4.0}) for _ in range(4)])
    f = draw_figures(emb, np.full(4, PIANO))["piano"]
    assert (f["d_part"], f["d_rest"]) == (pytest.approx(4.0), pytest.approx(1.0))
    assert f["d_none"] == pytest.approx(math.hypot(1.0, 4.0))
    assert f["leak"] > 1.0
    assert f["triplet_acc"] == 0.0


def test_spread_over_draws_leaves_out_undefined_draws():
    draws = [{"piano": {"d_part": 1.0, "d_rest": 2.0, "d_none": 3.0, "leak": x, "triplet_acc": 50.0}}
             for x in (0.2, 0.4, float("nan"))]
    s = summarize(draws)["piano"]
    assert s["leak"] == {"mean": pytest.approx(0.3), "sd": pytest.approx(math.sqrt(0.02)), "draws": 2}
    assert s["d_none"]["draws"] == 3 and s["d_none"]["sd"] == 0.0
    assert set(summarize(draws)) == {"piano"}


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    from trainer.data.synth import build_dataset

    root = tmp_path_factory.mktemp("leakset")
    build_dataset(root, 10, seed=7, song_seconds=8, splits=(0, 1.0, 0), workers=1,
                  sample_rate=AUDIO.sample_rate)
    return root


def test_the_command_measures_several_models_on_the_same_triplets(dataset_root, tmp_path, capsys):
    spec = ModelSpec(net=NetConfig(widths=(4, 8, 8, 16, 16), n_mels=32), audio=AUDIO)
    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        files.append(tmp_path / f"m{seed}.safetensors")
        save_weights(files[-1], CSN(spec.net).eval(), spec)
    args = ["--data", str(dataset_root), "--seconds", "2", "--triplets", "20", "--draws", "3"]
    out = tmp_path / "leak.json"
    assert main([*map(str, files), *args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"m0.safetensors", "m1.safetensors"}
    assert result["m0.safetensors"] != result["m1.safetensors"]
    for parts in result.values():
        assert set(parts) <= set(PARTS) and len(parts) >= 2
        for f in parts.values():
            assert f["d_none"]["draws"] == 3 and f["d_none"]["mean"] > 0
            assert 0.0 <= f["triplet_acc"]["mean"] <= 100.0
    printed = capsys.readouterr().out
    assert "== m0.safetensors" in printed and "leak" in printed
    # the same triplets again: the same figures; one model alone measures as it did beside another
    again = tmp_path / "again.json"
    assert main([str(files[1]), *args, "--json", str(again)]) == 0
    assert json.loads(again.read_text())["m1.safetensors"] == result["m1.safetensors"]


def test_the_command_names_what_is_wrong(dataset_root, tmp_path, caplog):
    missing = tmp_path / "none.safetensors"
    assert main([str(missing), "--data", str(dataset_root)]) == 1
    assert "none.safetensors" in caplog.text
    spec = ModelSpec(net=NetConfig(widths=(4, 8, 8, 16, 16), n_mels=32), audio=AUDIO)
    w = tmp_path / "m.safetensors"
    save_weights(w, CSN(spec.net).eval(), spec)
    assert main([str(w), "--data", str(tmp_path / "nowhere")]) == 1
    assert main([str(w), "--data", str(dataset_root), "--keep-prob", "2"]) == 1
    assert "keep_prob is a probability" in caplog.text
