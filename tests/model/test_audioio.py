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


# ---------------------------------------------------------------- streams without a length header

def _tones(seconds: float, sr: int, quiet: float = 0.0) -> np.ndarray:
    """(samples, 2) float32 chord whose notes change every second, after ``quiet`` s of
    near-silence; no noise, so AAC decodes it without random (PNS) bands."""
    t = np.arange(int(seconds * sr)) / sr
    f = 110.0 * 2 ** (np.floor(t) % 12 / 12)
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / sr) + 0.2 * np.sin(2 * np.pi * np.cumsum(1.5 * f) / sr)
    x[t < quiet] *= 1e-4
    return np.stack([x, 0.8 * x], axis=1).astype(np.float32)


def _mp3(x: np.ndarray, sr: int, bit_rate: int) -> bytes:
    """Raw MP3 frames at a constant bit rate, without a Xing/Info header."""
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3", options={"write_xing": "0"}) as c:
        s = c.add_stream("libmp3lame", rate=sr)
        s.layout, s.bit_rate = "stereo", bit_rate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout="stereo")
        frame.sample_rate = sr
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)
    return buf.getvalue()


@pytest.fixture(scope="module")
def adts(tmp_path_factory):
    """A 75-s raw ADTS AAC stream with a quiet 2-s intro: FFmpeg's bit-rate estimate of its
    length, taken from the intro's tiny frames, is about 2000 s."""
    from tests.app.library_helpers import write_av

    path = tmp_path_factory.mktemp("adts") / "long.aac"
    return write_av(path, _tones(75.0, RATE, quiet=2.0), RATE, "aac", "adts")


def test_raw_adts_aac_is_measured_and_read(adts):
    info = probe(adts)
    assert info.backend == "pyav" and info.duration == pytest.approx(75.0, abs=0.1)
    c = read_clips(adts, RATE, 3.0, 10)
    assert c.clips.shape == (10, 3 * RATE) and 70 < c.starts[-1] < 72.1
    # each window holds the samples a whole decode has there: seeking lands where it should,
    # and the decoder gets the frame before a window (AAC's overlap) to build on
    whole = read_all(adts, RATE)
    assert len(whole) / RATE == pytest.approx(75.0, abs=0.1)
    for start, clip in zip(c.starts[1:], c.clips[1:], strict=True):
        s = int(round(start * RATE))
        np.testing.assert_allclose(clip, whole[s:s + 3 * RATE], atol=1e-4)


def test_adts_of_any_length(tmp_path, adts):
    """ADTS frames stand alone, so eight copies are one valid 10-minute stream."""
    long = tmp_path / "ten_minutes.aac"
    long.write_bytes(adts.read_bytes() * 8)
    one = probe(adts).duration
    assert probe(long).duration == pytest.approx(8 * one, abs=0.5)
    c = read_clips(long, RATE, 3.0, 10)
    assert c.starts[-1] > 8 * one - 6 and (np.abs(c.clips).max(axis=1) > 0.1).all()


def test_mp3_without_a_length_header_is_measured(tmp_path):
    """10 s at 32 kbit/s, then 65 s at 320: without a Xing table libsndfile's length (from the
    first frames' bit rate) says 660 s."""
    x = _tones(75.0, 44100)
    path = tmp_path / "vbr.mp3"
    path.write_bytes(_mp3(x[:10 * 44100], 44100, 32000) + _mp3(x[10 * 44100:], 44100, 320000))
    assert sf.info(str(path)).frames / 44100 > 300  # the estimate this guards against
    info = probe(path)
    assert info.backend == "soundfile" and info.duration == pytest.approx(75.1, abs=0.2)
    c = read_clips(path, RATE, 3.0, 10)
    assert c.starts[-1] > 70 and (np.abs(c.clips).max(axis=1) > 0.1).all()
    # FFmpeg's decoder rejects the frame where the two streams meet; it is skipped, not fatal
    c = read_clips(path, RATE, 3.0, 10, info=AudioInfo(info.duration, 44100, 2, "pyav"))
    assert c.starts[-1] > 70 and (np.abs(c.clips).max(axis=1) > 0.1).all()


def test_a_cut_mp3_with_a_length_header_is_still_reported(tmp_path, formats):
    blob = formats["mp3"].read_bytes()  # PyAV writes a Xing header with the frame count
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DecodeError, match="truncated"):
        read_clips(cut, RATE, 1.0, 4)
