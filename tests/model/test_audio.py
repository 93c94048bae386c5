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


def _sine(cfg: AudioConfig, hz: float, seconds: float = 2.0) -> torch.Tensor:
    t = torch.arange(int(cfg.sample_rate * seconds)) / cfg.sample_rate
    return 0.3 * torch.sin(2 * np.pi * hz * t)


def test_pitch_channel_tells_apart_bass_notes_the_mel_rows_merge():
    """A2 and A#2 (110 / 116.5 Hz), and A3 and A#3: the shipped front end's mel rows put the
    upper pair on one row; the pitch rows put every semitone on its own row, in order."""
    mel_only = AudioConfig(sample_rate=16000, n_fft=4096)
    cfg = AudioConfig(sample_rate=16000, n_fft=4096, pitch=True)
    peaks = {}
    for hz in (110.0, 116.54, 220.0, 233.08):
        both = log_mel(_sine(cfg, hz), cfg)
        assert both.shape == (2, cfg.n_mels, cfg.frames(2.0)) and cfg.channels == 2
        # the first channel is the mel front end, unchanged
        torch.testing.assert_close(both[0], log_mel(_sine(cfg, hz), mel_only))
        peaks[hz] = tuple(int(c.mean(dim=1).argmax()) for c in both)
    assert peaks[220.0][0] == peaks[233.08][0]  # one mel row for two semitones
    rows = [peaks[hz][1] for hz in (110.0, 116.54, 220.0, 233.08)]
    assert rows == sorted(set(rows))  # four notes, four rows, rising
    # an octave is about 17.5 pitch rows (128 rows over 7.25 octaves)
    assert abs(peaks[220.0][1] - peaks[110.0][1] - 127 / np.log2(4186 / 27.5)) <= 1


def test_pitch_filters_read_every_band_and_are_batched_like_the_mel():
    from model.audio import PITCH_F_MAX, PITCH_F_MIN, pitch_fbanks
    cfg = AudioConfig(sample_rate=16000, n_fft=4096, n_mels=128, pitch=True)
    fb = pitch_fbanks(cfg)
    assert fb.shape == (cfg.n_fft // 2 + 1, cfg.n_mels)
    # bands narrower than an STFT bin (the lowest octaves) still read the bins around them
    assert (fb.max(dim=0).values >= 0.5).all() and (fb <= 1).all() and (fb >= 0).all()
    freqs = torch.arange(fb.shape[0]) * cfg.sample_rate / cfg.n_fft
    centres = freqs[fb.argmax(dim=0)]
    assert (centres.diff() >= 0).all()
    assert PITCH_F_MIN - 4 <= centres[0] <= PITCH_F_MIN + 4 and abs(centres[-1] - PITCH_F_MAX) < 4
    x = torch.randn(3, 16000) * 0.1
    batch = log_mel(x, cfg)
    assert batch.shape == (3, 2, cfg.n_mels, cfg.frames(1.0))
    torch.testing.assert_close(batch[1], log_mel(x[1], cfg))


def test_pitch_is_part_of_the_spec_only_when_on():
    assert "pitch" not in AudioConfig().to_dict()  # cards of mel-only models as they were
    on = AudioConfig(pitch=True)
    assert on.to_dict()["pitch"] is True and AudioConfig.from_dict(on.to_dict()) == on
