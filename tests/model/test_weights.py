import json

import numpy as np
import pytest
import torch

from model.audio import AudioConfig
from model.embedder import Embedder, segment_starts
from model.network import CSN, ModelSpec, NetConfig
from model.weights import WeightsError, load_weights, save_weights, sidecar

SPEC = ModelSpec(net=NetConfig(widths=(4, 8, 8, 16, 16), n_mels=64), audio=AudioConfig(n_mels=64))


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = CSN(SPEC.net)
    # non-trivial running stats, so BN buffers are checked too
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 64, 120))
    path = tmp_path / "m.safetensors"
    save_weights(path, model, SPEC, card={"data": "unit test"})
    return path, model


def test_round_trip_is_bit_exact(saved):
    path, model = saved
    w = load_weights(path)
    assert w.spec == SPEC
    assert w.card == {"data": "unit test"}
    for k, v in model.state_dict().items():
        assert torch.equal(v, w.model.state_dict()[k]), k
    assert len(w.sha256) == 64


def test_missing_files_are_named(tmp_path, saved):
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "nope.safetensors")
    path, _ = saved
    sidecar(path).unlink()
    with pytest.raises(WeightsError, match="missing the JSON card"):
        load_weights(path)


def test_truncated_file_is_refused(saved):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    doc = json.loads(sidecar(path).read_text())
    doc.pop("sha256")  # even without the checksum, the parser must refuse it
    sidecar(path).write_text(json.dumps(doc))
    with pytest.raises(WeightsError, match=str(path.name)):
        load_weights(path)


def test_corrupted_bytes_fail_the_checksum(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum"):
        load_weights(path)


def test_mismatched_architecture_is_refused(saved):
    path, _ = saved
    doc = json.loads(sidecar(path).read_text())
    doc["spec"]["net"]["widths"] = [8, 8, 8, 16, 16]
    sidecar(path).write_text(json.dumps(doc))
    with pytest.raises(WeightsError, match="do not match"):
        load_weights(path)


def test_garbage_card_is_refused(saved):
    path, _ = saved
    sidecar(path).write_text("{not json")
    with pytest.raises(WeightsError, match="unreadable JSON"):
        load_weights(path)


def test_embedder_shapes_and_track_vector(saved):
    path, _ = saved
    emb = Embedder.from_file(path, device="cpu")
    sr = 44100
    wave = np.random.default_rng(0).normal(0, 0.1, size=(sr * 12, 2)).astype(np.float32)
    out = emb.embed(wave, sr, window=3.0)
    assert out.segments.shape == (4, 640) and out.segments.dtype == np.float32
    assert np.allclose(out.starts, [0, 3, 6, 9])
    assert np.allclose(out.track, out.segments.mean(axis=0))
    few = emb.embed(wave, sr, window=3.0, hop=1.0, max_windows=3)
    assert len(few.starts) == 3 and few.starts[0] == 0 and few.starts[-1] == 9
    short = emb.embed(wave[:1000], sr, window=5.0)
    assert short.segments.shape == (1, 640)


def test_the_embedder_windows_default_to_the_pieces_it_was_trained_on(saved, tmp_path):
    path, model = saved
    assert Embedder.from_file(path, device="cpu").window == 5.0  # the card does not say
    four = tmp_path / "four.safetensors"
    save_weights(four, model, SPEC, card={"config": {"segment_seconds": 4.0}})
    emb = Embedder.from_file(four, device="cpu")
    assert emb.window == 4.0
    wave = np.random.default_rng(1).normal(0, 0.1, 16000 * 12).astype(np.float32)
    assert np.allclose(emb.embed(wave, 16000).starts, [0, 4, 8])
    assert np.allclose(emb.embed(wave, 16000, window=6.0).starts, [0, 6])


def test_segment_starts_spread():
    s = segment_starts(100, 10, window=2.0, hop=1.0)
    assert s.tolist() == list(range(0, 81, 10))
    assert segment_starts(5, 10, window=2.0).tolist() == [0]


def test_a_pitch_model_round_trips_and_embeds_and_a_card_must_agree(tmp_path):
    spec = ModelSpec(net=NetConfig(widths=(4, 8, 8, 16, 16), n_mels=64, channels=2),
                     audio=AudioConfig(n_mels=64, pitch=True))
    path = tmp_path / "p.safetensors"
    save_weights(path, CSN(spec.net), spec)
    assert load_weights(path).spec == spec
    wave = np.random.default_rng(0).normal(0, 0.1, size=(44100 * 4, 2)).astype(np.float32)
    assert Embedder.from_file(path, device="cpu").embed(wave, 44100, window=2.0).segments.shape == (2, 640)
    doc = json.loads(sidecar(path).read_text())
    doc["spec"]["audio"]["pitch"] = False  # a front end of one channel for a network of two
    sidecar(path).write_text(json.dumps(doc))
    with pytest.raises(WeightsError, match="net.channels 2 does not match the front end's 1"):
        load_weights(path)
    doc["spec"]["audio"]["pitch"] = "yes"
    sidecar(path).write_text(json.dumps(doc))
    with pytest.raises(WeightsError, match="audio.pitch 'yes'"):
        load_weights(path)
