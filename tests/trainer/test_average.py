"""``partwise-train average``: the weighted mean of weights files of one model, with its card."""

import json

import pytest
import torch

from model.network import CSN
from model.weights import load_weights, save_weights
from trainer.average import average
from trainer.cli import main
from trainer.config import resolve

SPEC = resolve("smoke").model_spec()


def _file(path, seed, chunks, seconds, bias, spec=SPEC, **card):
    torch.manual_seed(seed)
    card = {"training": {"seconds": seconds, "device": "cpu", "chunks": chunks},
            "norm_bias_trained": bias, "norm_bias": [b + 9 for b in bias],
            "presence_calibration": {"method": "test"}, "config": {"lr": 1e-4}} | card
    save_weights(path, CSN(spec.net), spec, card=card)
    return path


def _chunk(name):
    return {"started": name, "wall_minutes": 1.0, "args": [name]}


def test_the_mean_of_two_files_with_equal_and_with_given_shares(tmp_path):
    a = _file(tmp_path / "a.safetensors", 1, [_chunk("c1")], 100.0, [0.0] * 5, init={"weights": "x"})
    b = _file(tmp_path / "b.safetensors", 2, [_chunk("c1"), _chunk("c2")], 160.0, [1.0] * 5)
    sa, sb = (load_weights(p).model.state_dict() for p in (a, b))
    average([a, b], tmp_path / "ab.safetensors")
    average([a, b], tmp_path / "ab31.safetensors", mix=[3, 1])
    mid, skew = (load_weights(tmp_path / n) for n in ("ab.safetensors", "ab31.safetensors"))
    floats = [k for k in sa if sa[k].is_floating_point()]
    assert floats and any(not torch.equal(sa[k], sb[k]) for k in floats)
    for k in floats:
        torch.testing.assert_close(mid.model.state_dict()[k], (sa[k] + sb[k]) / 2)
        torch.testing.assert_close(skew.model.state_dict()[k], 0.75 * sa[k] + 0.25 * sb[k])
    # presence: the trained biases are averaged, the calibration is gone (calibrate again)
    assert mid.card["norm_bias"] == pytest.approx([0.5] * 5)
    assert skew.card["norm_bias"] == pytest.approx([0.25] * 5)
    assert "presence_calibration" not in mid.card and "norm_bias_trained" not in mid.card
    assert [p["weights"] for p in mid.card["average"]] == ["a.safetensors", "b.safetensors"]
    assert [p["share"] for p in skew.card["average"]] == [0.75, 0.25]
    assert mid.card["config"] == {"lr": 1e-4} and "init" not in mid.card  # the parents say it
    # b trained on from a: one line of descent, so b's time is the whole of it
    assert mid.card["training"]["seconds"] == 160.0
    assert [c["started"] for c in mid.card["training"]["chunks"]] == ["c1", "c2"]


def test_diverged_runs_keep_every_chunk_and_no_total(tmp_path):
    a = _file(tmp_path / "a.safetensors", 1, [_chunk("c1"), _chunk("c2")], 100.0, [0.0] * 5)
    b = _file(tmp_path / "b.safetensors", 2, [_chunk("c1"), _chunk("c3")], 120.0, [1.0] * 5)
    average([a, b], tmp_path / "ab.safetensors")
    card = load_weights(tmp_path / "ab.safetensors").card
    assert [c["started"] for c in card["training"]["chunks"]] == ["c1", "c2", "c3"]
    assert "seconds" not in card["training"]
    assert [p["seconds"] for p in card["average"]] == [100.0, 120.0]


def test_files_of_one_name_are_told_apart_by_their_run_folder(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r2").mkdir()
    a = _file(tmp_path / "r1" / "last.safetensors", 1, [], 1.0, [0.0] * 5)
    b = _file(tmp_path / "r2" / "last.safetensors", 2, [], 1.0, [0.0] * 5)
    s = _file(tmp_path / "start.safetensors", 3, [], 1.0, [0.0] * 5)
    average([s, a, b], tmp_path / "soup.safetensors")
    card = load_weights(tmp_path / "soup.safetensors").card
    assert [p["weights"] for p in card["average"]] == [
        "start.safetensors", "r1/last.safetensors", "r2/last.safetensors"]


def test_bad_input_is_refused_with_the_file_named(tmp_path, capsys, caplog):
    a = _file(tmp_path / "a.safetensors", 1, [], 1.0, [0.0] * 5)
    other = resolve("smoke", ["--widths=4,8,8,16,32"]).model_spec()
    b = _file(tmp_path / "b.safetensors", 2, [], 1.0, [0.0] * 5, spec=other)
    out = tmp_path / "out.safetensors"
    assert main(["average", str(a), str(b), "--out", str(out)]) == 1
    assert "b.safetensors: its model spec" in caplog.text and not out.exists()
    assert main(["average", str(a), "--out", str(out)]) == 1
    assert "at least two" in caplog.text
    assert main(["average", str(a), str(a), "--mix", "1,-1", "--out", str(out)]) == 1
    assert main(["average", str(a), str(a), "--mix", "1,2,3", "--out", str(out)]) == 1
    assert "3 shares for 2" in caplog.text
    assert main(["average", str(a), str(tmp_path / "missing.safetensors"), "--out", str(out)]) == 1
    assert "missing.safetensors" in caplog.text and not out.exists()
    assert main(["average", str(a), str(a), "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["sha256"] in capsys.readouterr().out


def test_weights_without_the_pitch_channel_average_with_a_run_that_added_it(tmp_path):
    pitch = resolve("smoke", ["--pitch=true"]).model_spec()
    a = _file(tmp_path / "a.safetensors", 1, [_chunk("c1")], 100.0, [0.0] * 5)
    b = _file(tmp_path / "b.safetensors", 2, [_chunk("c1"), _chunk("c2")], 160.0, [1.0] * 5,
              spec=pitch, config={"pitch": True})
    sa, sb = (load_weights(p).model.state_dict() for p in (a, b))
    average([a, b], tmp_path / "ab.safetensors")
    ab = load_weights(tmp_path / "ab.safetensors")
    assert ab.spec == pitch and ab.card["config"] == {"pitch": True}
    conv, ca, cb = (s["encoder.0.0.weight"] for s in (ab.model.state_dict(), sa, sb))
    torch.testing.assert_close(conv[:, :1], (ca + cb[:, :1]) / 2)
    torch.testing.assert_close(conv[:, 1:], cb[:, 1:] / 2)  # a reads the pitch rows with weight 0
    torch.testing.assert_close(ab.model.state_dict()["fc.weight"], (sa["fc.weight"] + sb["fc.weight"]) / 2)
