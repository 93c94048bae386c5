import numpy as np
import pytest
import soundfile as sf

from app.tags import read_tags
from model.audioio import (
    AudioInfo,
    DecodeError,
    check_complete,
    probe,
    read,
    read_all,
    read_clips,
    resample,
)
from tests.app.library_helpers import music, real_recordings, write_all_formats, write_bad_files

RATE = 22050


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    return write_all_formats(tmp_path_factory.mktemp("formats"), seconds=4.0)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "aiff", "mp3", "m4a", "opus"])
def test_every_format_decodes_to_the_analysis_windows(formats, ext):
    c = read_clips(formats[ext], RATE, window=1.0, max_windows=3)
    assert c.clips.shape == (3, RATE) and c.clips.dtype == np.float32
    assert 3.9 < c.info.duration < 4.2
    np.testing.assert_allclose(c.starts, [0.0, 1.5, 3.0], atol=0.51)
    assert np.isfinite(c.clips).all()
    # the synthetic piece is loud everywhere: every window holds signal
    assert (np.sqrt((c.clips ** 2).mean(axis=1)) > 0.05).all()


def test_m4a_goes_through_pyav_and_the_rest_through_soundfile(formats):
    assert probe(formats["m4a"]).backend == "pyav"
    assert probe(formats["flac"]).backend == "soundfile"


def test_pyav_and_soundfile_windows_agree(tmp_path):
    path = tmp_path / "x.flac"
    sf.write(path, music(7.0, 44100, seed=3), 44100)
    info = probe(path)
    a = read_clips(path, RATE, 2.0, 3, info=info)
    b = read_clips(path, RATE, 2.0, 3, info=AudioInfo(info.duration, info.sample_rate, info.channels, "pyav"))
    np.testing.assert_allclose(a.starts, b.starts)
    np.testing.assert_allclose(a.clips, b.clips, atol=1e-4)


def test_windows_match_the_whole_decode(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, music(9.0, RATE, seed=4), RATE)
    whole = read_all(path, RATE)
    c = read_clips(path, RATE, 3.0, 2)
    s = int(c.starts[1] * RATE)
    np.testing.assert_allclose(c.clips[1], whole[s:s + 3 * RATE], atol=1e-6)


def test_bad_files_fail_with_the_file_and_the_problem(tmp_path):
    files = write_bad_files(tmp_path)
    expect = {"truncated.flac": "", "truncated.wav": "truncated", "corrupt.flac": "",
              "text.mp3": "not a readable audio file", "empty.wav": "empty file",
              "one_sample.wav": "too short"}
    for name, words in expect.items():
        with pytest.raises(DecodeError) as e:
            read_clips(files[name], RATE, 3.0, 4)
        assert str(files[name]) in str(e.value) and words in str(e.value), str(e.value)
    for name in ("rate8k_ok.wav", "rate96k_ok.flac", "six_channels_ok.wav"):
        c = read_clips(files[name], RATE, 3.0, 4)
        assert c.clips.shape == (1, 3 * RATE) and np.abs(c.clips).max() > 0.1


def test_cut_ogg_is_reported(tmp_path, formats):
    blob = formats["ogg"].read_bytes()
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DecodeError, match="end-of-stream"):
        check_complete(cut)
    check_complete(formats["ogg"])
    check_complete(formats["opus"])


def test_tags_or_file_name(tmp_path, formats):
    t = read_tags(formats["wav"])
    assert t.title == "song_wav" and t.artist == ""
    real = real_recordings()
    if not real:
        pytest.skip("real recordings not present")
    t = read_tags(real[-1])
    assert t.title == "Vibe Ace" and t.artist == "Kevin MacLeod" and 60 < t.duration < 63


def test_real_recordings_decode():
    real = real_recordings()
    if not real:
        pytest.skip("real recordings not present")
    for path in real:
        c = read_clips(path, RATE, 3.0, 5)
        assert c.clips.shape == (5, 3 * RATE)
        assert c.info.sample_rate == 44100 and c.info.channels == 2
        assert (np.abs(c.clips).max(axis=1) > 0.01).all()


def test_resampled_windows_match_the_shared_front_end(tmp_path):
    from model.audio import prepare

    path = tmp_path / "x.flac"
    x = music(8.0, 44100, seed=8)
    sf.write(path, x, 44100)
    c = read_clips(path, RATE, 2.0, 3)
    ref = prepare(sf.read(path, dtype="float32")[0], 44100).numpy()
    s = int(round(c.starts[1] * RATE))
    mid = slice(500, 2 * RATE - 500)  # away from the clip edges, where padding differs
    np.testing.assert_allclose(c.clips[1][mid], ref[s:s + 2 * RATE][mid], atol=2e-3)


def test_whole_file_keeps_channels_or_resamples_to_mono(tmp_path, formats):
    stereo, rate = read(formats["flac"])
    assert stereo.ndim == 2 and stereo.shape[1] == 2 and stereo.dtype == np.float32
    mono, r = read(formats["m4a"], 16000, mono=True)
    assert r == 16000 and mono.ndim == 1
    assert len(mono) == pytest.approx(len(stereo) * 16000 / rate, rel=0.02)


def test_resampler_is_band_limited():
    """A 12 kHz tone at 44.1 kHz taken to 16 kHz (Nyquist 8 kHz) is filtered out, not folded
    down to 4 kHz as linear interpolation would; a 1 kHz tone passes unchanged in level."""
    t = np.arange(44100) / 44100
    high = resample(np.sin(2 * np.pi * 12000 * t), 44100, 16000)
    low = resample(np.sin(2 * np.pi * 1000 * t), 44100, 16000)
    assert high.shape == low.shape == (16000,)
    mid = slice(1000, -1000)
    assert np.sqrt((high[mid] ** 2).mean()) < 0.01
    assert np.sqrt((low[mid] ** 2).mean()) == pytest.approx(np.sqrt(0.5), rel=0.01)
