"""Loader for any dataset in the Slakh2100 layout (ours, the real Slakh2100, BabySlakh).

Layout: ``<root>/{train,validation,test}/TrackNNNNN/`` with ``metadata.yaml``,
``stems/SNN.flac`` (or .wav), ``mix.flac``, ``all_src.mid`` and ``MIDI/SNN.mid``. Each track
gives the five class signals (:data:`model.parts.PARTS` order: the sum of the stems of each
class), the mix, the tempo and per-window activity. A manifest of the tracks is cached beside the
data (or in the user's cache folder when the data is read-only) and refreshed for tracks whose
files changed, appeared or went away.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from model import audioio
from model.audio import SAMPLE_RATE
from model.embedder import segment_starts
from model.parts import N_PARTS, PARTS
from trainer.data.slakh import midi_tempo, part_of_class

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
TEMPO_CLASSES = 36
TEMPO_MIN = 40.0
TEMPO_MAX = 250.0
# Time-average power (dBFS, 10*log10(mean(x^2))) above which a part counts as audible in a
# window. A lone soft note in a 3 s window sits near -40 dBFS; release tails and silence lie below.
ACTIVITY_THRESHOLD_DB: float = -50.0
MANIFEST_VERSION = 3
DEFAULT_TEMPO = 120.0  # when neither the metadata nor all_src.mid gives one
MANIFEST_NAME = ".partwise-manifest.json"
AUDIO_EXTS: tuple[str, ...] = (".flac", ".wav", ".ogg")

_TEMPO_EDGES = np.geomspace(TEMPO_MIN, TEMPO_MAX, TEMPO_CLASSES + 1)


def tempo_class(bpm: float) -> int:
    """One of 36 log-spaced tempo bins over 40-250 BPM (clamped at both ends) -> 0..35."""
    if not math.isfinite(bpm) or bpm <= 0:
        raise ValueError(f"invalid tempo {bpm!r}")
    i = int(np.searchsorted(_TEMPO_EDGES, bpm, side="right")) - 1
    return min(max(i, 0), TEMPO_CLASSES - 1)


def part_of_stem(stem: dict) -> int | None:
    """Part index (into PARTS) of one ``metadata.yaml`` stem entry; None if not rendered."""
    if not stem.get("audio_rendered", True):
        return None
    program = stem.get("program_num")
    return part_of_class(stem.get("inst_class"), bool(stem.get("is_drum", False)),
                         int(program) if program is not None else None)


def power_db(x: np.ndarray, length: int | None = None) -> np.ndarray:
    """Time-average power in dBFS along the last axis (``length`` as the divisor if given)."""
    n = x.shape[-1] if length is None else length
    p = np.square(x, dtype=np.float64).sum(axis=-1) / max(n, 1)
    return 10.0 * np.log10(np.maximum(p, 1e-20))


def activity(parts: np.ndarray, sr: int, window: float, hop: float | None = None) -> np.ndarray:
    """Which parts are audible in each window.

    parts: (5, n) float -> (5, n_windows) bool, windows placed by
    :func:`model.embedder.segment_starts` (a short tail counts as zero-padded).
    """
    parts = np.asarray(parts)
    if parts.ndim != 2 or parts.shape[0] != N_PARTS:
        raise ValueError(f"expected ({N_PARTS}, samples), got {parts.shape}")
    win = int(round(window * sr))
    starts = segment_starts(parts.shape[1], sr, window, hop)
    out = np.zeros((N_PARTS, len(starts)), dtype=bool)
    for j, s in enumerate(starts.tolist()):
        out[:, j] = power_db(parts[:, s:s + win], win) > ACTIVITY_THRESHOLD_DB
    return out


@dataclass(frozen=True)
class TrackInfo:
    """One track of the manifest. ``present[c]``: part c has a rendered stem that is audible
    (above :data:`ACTIVITY_THRESHOLD_DB` over at least one second) somewhere in the track."""

    name: str
    split: str
    path: Path
    tempo: float
    tempo_class: int
    duration: float
    sample_rate: int
    present: tuple[bool, bool, bool, bool, bool]
    font: str | None
    source: str  # "synth" | "midi" | "pop909" | "slakh"
    fonts: tuple[str, ...] = ()  # every font or plugin a stem was rendered with


@dataclass(frozen=True)
class _Stem:
    file: str  # relative to the track folder
    part: int


def _find_audio(folder: Path, stem: str) -> Path | None:
    for ext in AUDIO_EXTS:
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    return None


def _signature(track: Path) -> list:
    """What must stay the same for a cached manifest entry to stay valid."""
    sig = []
    for name in ("metadata.yaml", "all_src.mid", "stems"):
        p = track / name
        try:
            st = p.stat()
            sig.append([name, st.st_size if p.is_file() else 0, st.st_mtime_ns])
        except FileNotFoundError:
            sig.append([name, None, None])
    mix = _find_audio(track, "mix")
    st = mix.stat() if mix else None
    sig.append(["mix", mix.name if mix else None, st.st_size if st else None,
                st.st_mtime_ns if st else None])
    return sig


def read_metadata(track: Path) -> dict:
    """Parse a track's metadata.yaml; a clear error names the file."""
    path = track / "metadata.yaml"
    try:
        with open(path, encoding="utf-8") as fh:
            meta = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read track metadata ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return meta


def _scan_track(track: Path, split: str) -> tuple[dict, list[_Stem]]:
    """Read one track's metadata (and its MIDI tempo, audio header if needed)."""
    meta = read_metadata(track)
    stems_dir = track / str(meta.get("audio_dir") or "stems")
    stems: list[_Stem] = []
    present = [False] * N_PARTS
    for key, entry in sorted((meta.get("stems") or {}).items()):
        entry = entry or {}
        part = part_of_stem(entry)
        if part is None:
            continue
        audio = _find_audio(stems_dir, str(key))
        if audio is None:
            log.warning("%s: stem %s is marked rendered but has no audio file; skipped", track, key)
            continue
        stems.append(_Stem(str(audio.relative_to(track)), part))
        # audible somewhere: Partwise builds record it per stem; a Slakh stem that was
        # rendered counts as present
        if entry.get("active_seconds") is not None:
            present[part] |= int(entry["active_seconds"]) > 0
        elif entry.get("rms_db") is not None:
            present[part] |= float(entry["rms_db"]) > ACTIVITY_THRESHOLD_DB
        else:
            present[part] = True
    mix = _find_audio(track, "mix")
    probe = mix or (track / stems[0].file if stems else None)
    if probe is None:
        raise ValueError(f"{track}: no mix and no rendered stems")
    try:
        info = sf.info(str(probe))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ValueError(f"{probe}: cannot read audio ({exc})") from exc
    tempo = meta.get("tempo")
    if tempo is None:
        midi = track / "all_src.mid"
        try:
            tempo = midi_tempo(midi) if midi.exists() else DEFAULT_TEMPO
        except ValueError as exc:
            log.warning("%s; assuming %.0f BPM", exc, DEFAULT_TEMPO)
            tempo = DEFAULT_TEMPO
    source = str(meta.get("source") or "slakh")
    font = meta.get("soundfont")
    # Slakh2100 names a plugin per stem and no track font; our builds name both
    fonts = {str(f) for f in (font, meta.get("drum_soundfont")) if f}
    fonts |= {str(e["plugin_name"]) for e in (meta.get("stems") or {}).values()
              if isinstance(e, dict) and e.get("plugin_name") and e.get("audio_rendered", True)}
    entry = {
        "name": track.name, "split": split, "tempo": float(tempo),
        "duration": float(info.frames) / info.samplerate, "file_rate": int(info.samplerate),
        "present": present, "font": str(font) if font else None, "source": source,
        "fonts": sorted(fonts),
        "mix": mix.name if mix else None,
        "stems": [[s.file, s.part] for s in stems],
    }
    return entry, stems


def hashed_split(key: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 seed: int = 0) -> str:
    """A split for ``key`` from a hash of it: stable, independent of the other keys."""
    f = np.asarray(fractions, dtype=float)
    f = f / f.sum()
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    return SPLITS[min(int(np.searchsorted(np.cumsum(f), u, side="right")), len(SPLITS) - 1)]


def _manifest_path(split_dir: Path, name: str = MANIFEST_NAME) -> Path:
    if os.access(split_dir, os.W_OK):
        return split_dir / name
    key = hashlib.sha1(f"{split_dir.resolve()}/{name}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "partwise" / "manifests"
    return cache / f"{key}.json"


def _track_dirs(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir()
                  if p.is_dir() and p.name.startswith("Track") and (p / "metadata.yaml").exists())


class SlakhDataset:
    """The tracks of one split of a Slakh-layout dataset.

    ``root`` holds ``train/``, ``validation/`` and ``test/`` (Slakh2100 and Partwise builds).
    A root that holds the track folders directly (BabySlakh) is split 80/10/10 by a hash of
    each track's name. Audio is returned mono float32 at ``sample_rate`` (resampled on load
    when the files differ).
    """

    def __init__(self, root: str | Path, split: str, sample_rate: int = SAMPLE_RATE):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.sample_rate = int(sample_rate)
        split_dir = self.root / split
        self.flat = not split_dir.is_dir() and self.root.is_dir() and bool(_track_dirs(self.root))
        if self.flat:
            split_dir = self.root
            log.info("%s: no split folders; splitting its tracks 80/10/10 by name", self.root)
        elif not split_dir.is_dir():
            raise FileNotFoundError(
                f"{split_dir}: no such split folder; a Slakh-layout dataset has "
                f"{'/, '.join(SPLITS)}/ under its root (build one with 'partwise-train data synth')")
        self._entries = self._load_manifest(split_dir)
        self.tracks: list[TrackInfo] = [self._info(split_dir, e) for e in self._entries]

    # -- manifest -------------------------------------------------------------------------
    def _load_manifest(self, split_dir: Path) -> list[dict]:
        path = _manifest_path(split_dir, f".partwise-manifest-{self.split}.json" if self.flat
                              else MANIFEST_NAME)
        cached: dict[str, dict] = {}
        try:
            data = json.loads(path.read_text())
            if data.get("version") == MANIFEST_VERSION:
                cached = {e["name"]: e for e in data.get("tracks", [])}
        except (OSError, ValueError, AttributeError):
            pass
        entries, changed = [], False
        dirs = _track_dirs(split_dir)
        if self.flat:
            dirs = [d for d in dirs if hashed_split(d.name) == self.split]
        for track in dirs:
            sig = _signature(track)
            old = cached.get(track.name)
            if old is not None and old.get("signature") == sig:
                entries.append(old)
                continue
            try:
                entry, _ = _scan_track(track, self.split)
            except ValueError as exc:
                log.warning("skipping %s", exc)
                continue
            entry["signature"] = sig
            entries.append(entry)
            changed = True
        if changed or len(cached) != len(entries):
            self._save_manifest(path, entries)
        log.debug("%s: %d tracks", split_dir, len(entries))
        return entries

    @staticmethod
    def _save_manifest(path: Path, entries: list[dict]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": MANIFEST_VERSION, "tracks": entries}))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("%s: cannot write the manifest cache (%s); the next load rescans", path, exc)

    def _info(self, split_dir: Path, e: dict) -> TrackInfo:
        present = tuple(bool(x) for x in e["present"])
        return TrackInfo(
            name=e["name"], split=self.split, path=split_dir / e["name"], tempo=float(e["tempo"]),
            tempo_class=tempo_class(float(e["tempo"])), duration=float(e["duration"]),
            sample_rate=self.sample_rate, present=present,  # type: ignore[arg-type]
            font=e.get("font"), source=e.get("source", "slakh"), fonts=tuple(e.get("fonts", ())))

    # -- access ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tracks)

    def __repr__(self) -> str:
        return f"SlakhDataset({str(self.root)!r}, {self.split!r}, {len(self)} tracks)"

    def _read(self, path: Path) -> np.ndarray:
        """Mono float32 at ``self.sample_rate`` through the one audio intake; a DecodeError (a
        ValueError) names the file."""
        return audioio.read(path, self.sample_rate, mono=True)[0]

    def _length(self, i: int) -> int:
        return int(round(self._entries[i]["duration"] * self.sample_rate))

    def load_parts(self, i: int) -> np.ndarray:
        """(5, n) float32 at ``self.sample_rate``: the sum of each class's stems, zeros if absent.

        ``n`` is the mix's length at this rate.
        """
        entry, track = self._entries[i], self.tracks[i].path
        n = self._length(i)
        parts = np.zeros((N_PARTS, n), dtype=np.float32)
        for rel, part in entry["stems"]:
            self._add_stem(parts[part], track / rel)
        return parts

    def _add_stem(self, out: np.ndarray, path: Path) -> None:
        """Add the stem at ``path`` to ``out`` (a part's samples), cut to its length."""
        wave = self._read(path)
        m = min(len(out), len(wave))
        out[:m] += wave[:m]

    def load_twins(self, i: int) -> dict[int, np.ndarray]:
        """Track ``i``'s twins (``partwise-train data twins``): part -> (n,) float32, the sum of
        that part's twin stems at ``self.sample_rate``; empty when the track has none."""
        from trainer.data.twins import TWINS_DIR, read_twins

        track = self.tracks[i].path
        doc = read_twins(track)
        if not doc:
            return {}
        n = self._length(i)
        out: dict[int, np.ndarray] = {}
        for key, stem in (doc.get("stems") or {}).items():
            if stem.get("part") not in PARTS:
                continue
            part = PARTS.index(stem["part"])
            self._add_stem(out.setdefault(part, np.zeros(n, dtype=np.float32)),
                           track / TWINS_DIR / f"{key}.flac")
        return out

    def load_mix(self, i: int) -> np.ndarray:
        """(n,) float32 at ``self.sample_rate``: mix.flac (the sum of all stems if it is missing)."""
        entry, track = self._entries[i], self.tracks[i].path
        if entry.get("mix"):
            wave = self._read(track / entry["mix"])
            n = self._length(i)
            if len(wave) != n:
                wave = np.pad(wave[:n], (0, max(0, n - len(wave))))
            return wave
        return self.load_parts(i).sum(axis=0)

    def activity(self, i: int, window: float, hop: float | None = None) -> np.ndarray:
        """(5, n_windows) bool activity of track ``i`` (see :func:`activity`)."""
        return activity(self.load_parts(i), self.sample_rate, window, hop)

    @property
    def fonts(self) -> list[str]:
        """Every font or plugin that voiced a track of this split, sorted."""
        return sorted({f for t in self.tracks for f in (*t.fonts, t.font) if f})

    def summary(self) -> dict:
        """Counts for logs and reports: tracks, hours, per-part presence, sources, fonts."""
        present = np.array([t.present for t in self.tracks], dtype=bool).reshape(-1, N_PARTS)
        return {
            "split": self.split, "tracks": len(self),
            "hours": round(sum(t.duration for t in self.tracks) / 3600, 3),
            "present": present.sum(axis=0).tolist(),
            "sources": sorted({t.source for t in self.tracks}),
            "fonts": self.fonts,
        }


def check_track(ds: SlakhDataset, i: int, mix_tolerance: float | None = 1e-3) -> list[str]:
    """Problems with track ``i`` of ``ds`` (empty if none): unreadable or missing audio, stems of
    another length than the mix, a mix that is not the sum of its stems (when a tolerance is
    given; Slakh2100's own mixes are not exact sums, pass None there)."""
    t, entry = ds.tracks[i], ds._entries[i]
    problems = []
    try:
        parts = ds.load_parts(i)
        mix = ds.load_mix(i)
    except ValueError as exc:
        return [str(exc)]
    for rel, _ in entry["stems"]:
        info = sf.info(str(t.path / rel))
        if abs(info.frames / info.samplerate - t.duration) > 0.05:
            problems.append(f"{t.path / rel}: {info.frames / info.samplerate:.2f} s, "
                            f"the mix has {t.duration:.2f} s")
    if mix_tolerance is not None and entry.get("mix"):
        err = float(np.abs(parts.sum(axis=0) - mix).max(initial=0.0))
        if err > mix_tolerance:
            problems.append(f"{t.path}: the mix differs from the sum of the stems by up to {err:.4f}")
    if not entry["stems"]:
        problems.append(f"{t.path}: no rendered stems")
    return problems
