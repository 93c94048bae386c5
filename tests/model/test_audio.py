import numpy as np
import pytest
import torch

from model.audio import AudioConfig, log_mel, prepare


def test_440hz_sine_lands_in_the_right_mel_band():
    cfg = AudioConfig()
    t = torch.arange(cfg.sample_rate * 2) / cfg.sample_rate
    mel = log_mel(0.5 * torch.sin(2 * np.pi * 440 * t), cfg)
    assert mel.shape == (cfg.n_mels, cfg.frames(2.0))
    band = int(mel.mean(dim=1).argmax())
    # the mel band whose centre is nearest 440 Hz, from the filterbank itself
    import torchaudio

    fb = torchaudio.functional.melscale_fbanks(
        cfg.n_fft // 2 + 1, cfg.f_min, cfg.sample_rate / 2, cfg.n_mels, cfg.sample_rate
    )
    freqs = torch.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    centres = freqs[fb.argmax(dim=0)]
    expected = int((centres - 440).abs().argmin())
    assert abs(band - expected) <= 1
    assert 400 < centres[band] < 480


def test_normalization_is_fixed_and_bounded():
    silence = log_mel(torch.zeros(22050))
    assert torch.allclose(silence, torch.full_like(silence, -1.0))
    t = torch.arange(22050) / 22050
    loud = log_mel(torch.sin(2 * np.pi * 1000 * t))
    assert -0.2 < loud.max() < 1.2  # a full-scale sine peaks near 0 dB -> 1.0


def test_batched_equals_single():
    x = torch.randn(3, 22050) * 0.1
    batched = log_mel(x)
    single = torch.stack([log_mel(row) for row in x])
    assert torch.allclose(batched, single, atol=1e-5)


def test_prepare_mixes_down_and_resamples():
    stereo = np.stack([np.ones(44100), -np.ones(44100) * 0.5], axis=1).astype(np.float32)
    out = prepare(stereo, 44100)
    assert out.shape == (22050,)
    assert torch.allclose(out[1000:-1000], torch.full((20050,), 0.25), atol=1e-3)
    with pytest.raises(ValueError):
        prepare(np.zeros((2, 2, 2)), 44100)


@pytest.mark.parametrize("n_fft", [2048, 4096])
def test_the_cpu_front_end_computes_rows_apart_with_the_same_result(n_fft, monkeypatch):
    import model.audio as audio

    cfg = AudioConfig(sample_rate=16000, n_fft=n_fft, n_mels=128)
    wave = 0.3 * torch.randn(5, 16000 * 2, generator=torch.Generator().manual_seed(0))
    front = audio.LogMel(cfg)
    monkeypatch.setattr(audio, "CPU_ROWS", 10**6)  # the whole batch in one call
    whole = front(wave)
    for rows in (1, 2, 3):
        monkeypatch.setattr(audio, "CPU_ROWS", rows)
        assert torch.equal(front(wave), whole)
    assert whole.shape == (5, 128, cfg.frames(2.0))
