"""The one audio intake: decode a file, or only its analysis windows, and resample.

Analysis (the library scan), playback and training datasets all read audio here, so a clicked
track is decoded by the route that analysed it. libsndfile (``soundfile``) reads wav, flac,
ogg/vorbis, opus, mp3 and aiff quickly and seeks exactly; whatever it cannot open (m4a/aac, odd
mp3s, ...) goes through FFmpeg via PyAV. Both return the same float32 samples, and every change
of rate goes through :func:`resample` (band-limited windowed sinc), so features do not depend on
the decoder. Every failure is a :class:`DecodeError` whose message names the file and the problem.

A file's length comes from its header where the header states it (WAV, FLAC, Ogg, MP4, an MP3
with a Xing/VBRI table), and a file that ends before it is reported as truncated. Raw streams
(ADTS AAC, MP3 without a table, AC-3, ...) state no length, so theirs is measured from their
frames, and being shorter than a bit-rate estimate is no fault.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac",
     ".aif", ".aiff", ".aifc", ".wma", ".alac"}
)
MIN_DURATION = 1.0  # seconds; anything shorter cannot be analysed meaningfully
# A window that starts this far inside the declared duration must decode at least this share
# of its samples, or the file is reported as truncated.
_TRUNCATION_SLACK_S = 1.0
_MIN_SHARE = 0.5
# Raw elementary streams (ADTS AAC, MP3, AC-3, DTS, ...) have no header with their total length:
# FFmpeg and libsndfile's mpg123 estimate it from the bit rate of the first frames, which a quiet
# intro or a variable bit rate without a Xing/VBRI table puts off by a factor of 100 either way.
# Their length is measured instead (:func:`_measured_duration`).
_RAW_STREAM_FORMATS = frozenset({"aac", "mp3", "ac3", "eac3", "dts", "truehd", "mlp"})
# FFmpeg seeks to a frame boundary; AAC's overlap and MP3's bit reservoir need the frames before
# it, so windows are decoded from this far ahead of their start.
_SEEK_PREROLL_S = 0.5
_MAX_BAD_PACKETS = 8  # rejected packets in a row before a stream counts as broken


class DecodeError(ValueError):
    """A file could not be decoded; the message names the file and the problem."""


@dataclass(frozen=True)
class AudioInfo:
    """What the decoder knows before reading samples."""

    duration: float  # seconds
    sample_rate: int
    channels: int
    backend: str  # "soundfile" | "pyav"


@dataclass(frozen=True)
class Clips:
    """clips: (K, window * rate) mono float32 at ``rate``; starts: (K,) seconds."""

    clips: np.ndarray
    starts: np.ndarray
    info: AudioInfo
    rate: int


def is_audio_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


# ---------------------------------------------------------------- samples

def to_mono(wave: np.ndarray) -> np.ndarray:
    """(samples,) or (samples, channels) float -> (samples,) float32 mean over channels."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2 and wave.shape[1] > 0:
        # channel by channel: numpy's mean over a short inner axis is ~10x slower, and the
        # sum in channel order then one division gives the same float32 values
        mono = wave[:, 0].copy()
        for c in range(1, wave.shape[1]):
            mono += wave[:, c]
        if wave.shape[1] > 1:
            mono /= np.float32(wave.shape[1])
        wave = mono
    elif wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.ndim != 1:
        raise ValueError(f"expected (samples,) or (samples, channels), got shape {wave.shape}")
    return wave


@lru_cache(maxsize=16)
def _resampler(orig: int, new: int):
    import torchaudio  # only decoding needs torch: listing and tagging files do not

    return torchaudio.transforms.Resample(orig, new)


def resample(x: np.ndarray | torch.Tensor, orig: int, new: int) -> np.ndarray:
    """Band-limited (windowed-sinc, polyphase) resampling along the last axis: (..., n) at
    ``orig`` Hz -> (..., round(n * new / orig)) float32 at ``new`` Hz; the filter kernel is
    built once per rate pair. A no-op when the rates match."""
    if orig <= 0 or new <= 0:
        raise ValueError(f"invalid sample rates {orig} -> {new}")
    import torch

    t = torch.as_tensor(x, dtype=torch.float32)
    if orig == new:
        return t.numpy()
    with torch.inference_mode():
        return _resampler(int(orig), int(new))(t).numpy()


def segment_starts(n_samples: int, sr: int, window: float, hop: float | None = None,
                   max_windows: int | None = None) -> np.ndarray:
    """Start sample of each analysis window.

    Windows of ``window`` s every ``hop`` s (default: no overlap). With ``max_windows``, at most
    that many, spread evenly over the track. A track shorter than one window gets one window at 0.
    Costs O(windows returned), never O(n_samples): a header that claims years of audio plans
    ``max_windows`` windows like any other file.
    """
    win = int(round(window * sr))
    step = int(round((hop or window) * sr))
    if win <= 0 or step <= 0:
        raise ValueError(f"window and hop must be positive (window={window}, hop={hop})")
    if n_samples <= win:
        return np.zeros(1, dtype=np.int64)
    count = (n_samples - win) // step + 1  # windows that fit
    if max_windows is not None and count > max_windows:
        idx = np.unique(np.linspace(0, count - 1, max_windows).round().astype(np.int64))
        return idx * step
    return np.arange(count, dtype=np.int64) * step


# ---------------------------------------------------------------- probing

def _sf_name(path: Path) -> str | bytes:
    """A file name for libsndfile: its bytes on POSIX, so that names that are not valid UTF-8
    (surrogate-escaped by Python) open too."""
    return str(path) if os.name == "nt" else os.fsencode(path)


def _probe_soundfile(path: Path) -> AudioInfo | None:
    try:
        info = sf.info(_sf_name(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    if info.samplerate <= 0 or info.frames <= 0:
        return None
    duration = info.frames / info.samplerate
    if info.format == "MP3" and not _mp3_declares_length(path):
        try:  # mpg123's length is then a bit-rate estimate
            duration = _measured_duration(path)
        except DecodeError as e:
            log.debug("%s; keeping libsndfile's estimate", e)
    return AudioInfo(duration, int(info.samplerate), int(info.channels), "soundfile")


def _open_av(path: Path):
    import av

    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DecodeError(f"{path}: not a readable audio file ({_short(e)})") from e
    streams = [s for s in container.streams if s.type == "audio"]
    if not streams:
        container.close()
        raise DecodeError(f"{path}: no audio stream in the file")
    return container, streams[0]


def _probe_av(path: Path) -> AudioInfo:
    container, stream = _open_av(path)
    try:
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.channels or 0)
        if not rate:
            raise DecodeError(f"{path}: audio stream without a sample rate")
        if container.format.name in _RAW_STREAM_FORMATS:
            duration = _stream_end(path, container, stream)
        if duration is None or not math.isfinite(duration):
            # No duration in the headers: decode once to count (rare; raw streams).
            n = 0
            for fr in container.decode(stream):
                n += fr.samples
            duration = n / rate
        return AudioInfo(duration, rate, channels, "pyav")
    except DecodeError:
        raise
    except Exception as e:  # FFmpeg raises a wide family of errors on damaged files
        raise DecodeError(f"{path}: cannot read the audio stream ({_short(e)})") from e
    finally:
        container.close()


def _mp3_declares_length(path: Path) -> bool:
    """Whether an MP3's first frame is a Xing/Info or VBRI header, which holds the frame count
    (and so an exact length that a cut file falls short of)."""
    with open(path, "rb") as f:
        head = f.read(10)
        at = 0
        if len(head) == 10 and head[:3] == b"ID3":  # skip the ID3v2 tag (syncsafe size)
            at = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
            at += 10 if head[5] & 0x10 else 0  # footer
        f.seek(at)
        first = f.read(200)
    return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))


def _stream_end(path: Path, container, stream) -> float | None:
    """Seconds to the end of the last packet of a raw stream: seeking past the end makes FFmpeg
    read and index every frame (in C, about 1 s for 2 hours of ADTS); None when nothing is there."""
    if stream.time_base is None:
        return None
    beyond = path.stat().st_size + 3600  # seconds: more than any file could hold at 8 bit/s
    container.seek(int(beyond / stream.time_base), stream=stream, backward=True, any_frame=False)
    end = None
    for packet in container.demux(stream):
        if packet.pts is not None and packet.duration:
            end = max(end or 0, packet.pts + packet.duration)
    return float(end * stream.time_base) if end is not None else None


def _measured_duration(path: Path) -> float:
    """The length of a raw stream that libsndfile opened (MP3), measured by FFmpeg."""
    container, stream = _open_av(path)
    try:
        end = _stream_end(path, container, stream)
    except Exception as e:  # FFmpeg raises a wide family of errors on damaged files
        raise DecodeError(f"{path}: cannot read the audio stream ({_short(e)})") from e
    finally:
        container.close()
    if end is None:
        raise DecodeError(f"{path}: the file holds no audio frames")
    return end


def probe(path: str | os.PathLike) -> AudioInfo:
    """Duration, rate and channels; soundfile first, PyAV for what libsndfile cannot read."""
    path = Path(path)
    _check_readable(path)
    return _probe_soundfile(path) or _probe_av(path)


def _check_readable(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DecodeError(f"{path}: cannot access the file ({e.strerror})") from e
    if st.st_size == 0:
        raise DecodeError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise DecodeError(f"{path}: permission denied (file is not readable)")


def _short(e: BaseException) -> str:
    s = str(e).strip() or type(e).__name__
    return s if len(s) < 200 else s[:197] + "..."


# ---------------------------------------------------------------- completeness
# libsndfile quietly shortens a cut WAV/AIFF to the bytes present, and plays an Ogg stream up to
# its last whole page; the container says how long the file should be, so compare.

def _riff_shortfall(path: Path, size: int) -> str | None:
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12:
            return None
        big = head[:4] == b"FORM"
        if not ((head[:4] == b"RIFF" and head[8:12] == b"WAVE") or (big and head[8:12] in (b"AIFF", b"AIFC"))):
            return None
        order = "big" if big else "little"
        want = b"SSND" if big else b"data"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            h = f.read(8)
            if len(h) < 8:
                return None
            cid, n = h[:4], int.from_bytes(h[4:], order)
            if cid == want:
                if n in (0, 0xFFFFFFFF):  # streamed or RF64-style placeholder: unknown length
                    return None
                have = size - (pos + 8)
                if have < n * 0.98:
                    return f"truncated: the header promises {n} bytes of audio, the file holds {have}"
                return None
            pos += 8 + n + (n & 1)
    return None


def _ogg_shortfall(path: Path, size: int) -> str | None:
    with open(path, "rb") as f:
        f.seek(max(0, size - 65307))  # a page is at most 65307 bytes
        tail = f.read()
    at = tail.rfind(b"OggS")
    if at < 0 or at + 6 > len(tail):
        return "truncated or damaged: no Ogg page at the end of the file"
    if not tail[at + 5] & 0x04:
        return "truncated: the Ogg stream has no end-of-stream page (the file was cut short)"
    return None


def check_complete(path: str | os.PathLike) -> None:
    """DecodeError when the container shows the file was cut short (WAV, AIFF, Ogg)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
        if suffix in (".wav", ".wave", ".aif", ".aiff", ".aifc"):
            problem = _riff_shortfall(path, size)
        elif suffix in (".ogg", ".oga", ".opus"):
            problem = _ogg_shortfall(path, size)
        else:
            problem = None
    except OSError as e:
        raise DecodeError(f"{path}: cannot read the file ({e.strerror or e})") from e
    if problem:
        raise DecodeError(f"{path}: {problem}")


# ---------------------------------------------------------------- reading windows

def _read_soundfile(path: Path, starts: np.ndarray, length: float, info: AudioInfo) -> list[np.ndarray]:
    """Seek to each start (seconds) and read ``length`` s; returns (n, channels) native-rate arrays."""
    sr = info.sample_rate
    n = int(round(length * sr))
    out = []
    try:
        with sf.SoundFile(_sf_name(path)) as f:
            for s in starts.tolist():
                f.seek(min(int(round(s * sr)), max(f.frames - 1, 0)))
                out.append(f.read(n, dtype="float32", always_2d=True))
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise DecodeError(f"{path}: decoding failed ({_short(e)})") from e
    return out


def _frame_samples(frame) -> np.ndarray:
    """One decoded PyAV frame -> (n, channels) float32 in [-1, 1]."""
    a = frame.to_ndarray()
    ch = max(len(frame.layout.channels), 1)
    a = a.T if frame.format.is_planar else a.reshape(-1, ch)
    a = a.astype(np.float32)
    kind = frame.format.name.rstrip("p")
    if kind == "s16":
        a /= 32768.0
    elif kind == "s32":
        a /= 2147483648.0
    elif kind == "u8":
        a = (a - 128.0) / 128.0
    return a


def _frames(container, stream, path: Path):
    """Decoded frames from the current position. A packet the decoder rejects (a damaged frame,
    or one whose bit reservoir lies before the seek point) is skipped, as ffmpeg does; more than
    :data:`_MAX_BAD_PACKETS` in a row means the stream is broken."""
    import av

    bad = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.InvalidDataError as e:
            bad += 1
            if bad > _MAX_BAD_PACKETS:
                raise DecodeError(f"{path}: decoding failed ({_short(e)})") from e
            continue
        bad = 0
        yield from frames


def _read_av(path: Path, starts: np.ndarray, length: float, info: AudioInfo) -> list[np.ndarray]:
    """Seek (container-level) a little before each window, so that the decoder has the frames a
    window's first frame builds on, and decode just enough frames for it; returns (n, channels)
    native-rate arrays."""
    sr = info.sample_rate
    n = int(round(length * sr))
    container, stream = _open_av(path)
    out = []
    try:
        for s in starts.tolist():
            at = s - _SEEK_PREROLL_S
            if at > 0 and stream.time_base is not None:
                container.seek(int(at / stream.time_base), stream=stream, backward=True, any_frame=False)
            else:
                container.seek(0)
            parts: list[np.ndarray] = []
            have = 0
            for fr in _frames(container, stream, path):
                t0 = float(fr.time) if fr.time is not None else 0.0
                a = _frame_samples(fr)
                skip = int(round((s - t0) * sr))
                if skip >= len(a):
                    continue
                if skip > 0:
                    a = a[skip:]
                parts.append(a)
                have += len(a)
                if have >= n:
                    break
            clip = np.concatenate(parts)[:n] if parts else np.zeros((0, max(info.channels, 1)), np.float32)
            out.append(clip)
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"{path}: decoding failed ({_short(e)})") from e
    finally:
        container.close()
    return out


def read_clips(path: str | os.PathLike, rate: int, window: float,
               max_windows: int | None = None, info: AudioInfo | None = None) -> Clips:
    """Decode only the analysis windows of a file.

    Windows of ``window`` s without overlap, at most ``max_windows`` spread over the track
    (:func:`segment_starts`, the same policy the Embedder uses). Returns
    (K, round(window * rate)) mono float32 clips at ``rate``; a short tail is zero-padded.
    """
    path = Path(path)
    info = info or probe(path)
    if info.duration < MIN_DURATION:
        raise DecodeError(
            f"{path}: audio too short ({info.duration:.3f} s; at least {MIN_DURATION:g} s needed)"
        )
    if info.backend == "soundfile":
        check_complete(path)
    n_target = int(round(info.duration * rate))
    starts = segment_starts(n_target, rate, window, None, max_windows) / rate
    reader = _read_soundfile if info.backend == "soundfile" else _read_av
    raw = [to_mono(a) for a in reader(path, starts, window, info)]
    n_native = int(round(window * info.sample_rate))
    native = np.zeros((len(raw), n_native), dtype=np.float32)
    for i, (s, a) in enumerate(zip(starts.tolist(), raw, strict=True)):
        expected = min(window, info.duration - s) * info.sample_rate
        if s + _TRUNCATION_SLACK_S < info.duration and len(a) < _MIN_SHARE * expected:
            raise DecodeError(
                f"{path}: truncated or damaged: the file says {info.duration:.1f} s but the audio "
                f"ends near {s + len(a) / info.sample_rate:.1f} s"
            )
        native[i, : min(n_native, len(a))] = a[:n_native]
    if not np.isfinite(native).all():
        native = np.nan_to_num(native, nan=0.0, posinf=0.0, neginf=0.0)
    clips = resample(native, info.sample_rate, rate)
    win = int(round(window * rate))
    if clips.shape[1] != win:  # rounding of the rate ratio: trim or pad to exactly win samples
        fixed = np.zeros((len(clips), win), dtype=np.float32)
        fixed[:, : min(win, clips.shape[1])] = clips[:, :win]
        clips = fixed
    return Clips(clips=clips, starts=starts.astype(np.float32), info=info, rate=rate)


def read(path: str | os.PathLike, rate: int | None = None, mono: bool = False) -> tuple[np.ndarray, int]:
    """The whole file as float32 samples and their rate.

    (frames, channels) at the file's own rate, or at ``rate`` when given; (frames,) with
    ``mono``. FileNotFoundError when the file is gone, DecodeError for anything else.
    """
    path = Path(path)
    info = probe(path)
    reader = _read_soundfile if info.backend == "soundfile" else _read_av
    (a,) = reader(path, np.zeros(1), info.duration + 1.0, info)
    if len(a) == 0:
        raise DecodeError(f"{path}: the file holds no audio samples")
    if not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    if mono:
        a = to_mono(a)
    if rate is not None and rate != info.sample_rate:
        a = resample(a.T, info.sample_rate, rate).T
    return np.ascontiguousarray(a, dtype=np.float32), rate or info.sample_rate


def read_all(path: str | os.PathLike, rate: int) -> np.ndarray:
    """Whole file, mono float32 at ``rate`` (tools and the decode-only benchmark)."""
    return read(path, rate, mono=True)[0]


