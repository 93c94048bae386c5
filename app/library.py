"""The music library: scan folders, embed, store, index, and focus search. No Qt.

One :class:`Library` per library folder (SQLite + segment files + index, see :mod:`app.store`
and :mod:`app.index`). Scanning is an incremental generator that yields :class:`ScanProgress`;
it may run in one thread while others call :meth:`Library.tracks`, :meth:`Library.search` and
:meth:`Library.track_vectors` (each thread gets its own SQLite connection; the index has its
own lock).

Analysis policy: windows of ``window`` seconds without overlap, at most ``max_windows`` of
them spread evenly over the track (``model.audioio.segment_starts``); only those windows are
decoded. The window is as long as the model's training pieces (its card's ``segment_seconds``):
the model hears best what it learned on. Segment vectors, the track vector (their mean) and the
presence of each part come from the one embedding path,
:meth:`model.embedder.Embedder.embed_tracks`, fed with the windows of several tracks at once.

Scan policy: one process writes a library at a time (:class:`app.store.WriterLock`); others may
query meanwhile. Every problem with one file (decoding, embedding, storing it) becomes a failed
track with its reason, and the scan goes on. A failed file is tried again when it changes,
when the model or the analysis changes, on ``retry_failed``, and on every scan when its error
may be temporary (permission, I/O). A problem with the model (weights that do not load or
validate, NaN or infinite answers) stops the scan before anything stored is changed. Decoded
audio lives only from its decoding to the end of its batch: memory is bounded by the batch.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import struct
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from app.focus import because, best_segment_pair, best_segment_pairs, parse_focus
from app.index import IndexParams, VectorIndex
from app.store import Row, Store, StoreError
from app.timeline import Timeline, moment, part_timeline
from app.walk import FoundFile, Problem, shown, walk_audio
from assets import DEFAULT_WEIGHTS
from model.parts import EMBED_DIM, N_PARTS, PARTS, track_presence
from model.weights import DEFAULT_WINDOW, WeightsError, file_sha256, read_card, training_window

if TYPE_CHECKING:  # the model (and torch) load on first use: reading a library needs neither;
    # the scan's and the journey's helpers too, so that the commands that read start sooner
    from concurrent.futures import Future

    from app.journey import Journey
    from app.tags import Tags
    from model.audioio import Clips
    from model.embedder import Embedder, TrackEmbedding

log = logging.getLogger(__name__)

PRESENCE_RULE = "windows-mean"  # see model.parts.track_presence; bump when the rule changes


class LibraryError(RuntimeError):
    """A library operation failed; the message names the file or track and the problem."""


@dataclass(frozen=True)
class AnalysisPolicy:
    """Which windows of a track are analysed (see the module docstring)."""

    window: float = DEFAULT_WINDOW
    max_windows: int = 10

    def key(self) -> str:
        return f"win={self.window:g};max={self.max_windows}"

    @staticmethod
    def window_in(key: str | None) -> float | None:
        """The window (s) a :meth:`key` names; None when it names none."""
        for part in (key or "").split(";"):
            name, _, value = part.partition("=")
            if name == "win":
                try:
                    seconds = float(value)
                except ValueError:
                    return None
                return seconds if seconds > 0 else None
        return None

    @classmethod
    def for_card(cls, card: dict, path: str | Path | None = None) -> AnalysisPolicy:
        """Windows as long as the pieces the model was trained on
        (:func:`model.weights.training_window`)."""
        return cls(window=training_window(card, path))


@dataclass(frozen=True)
class Track:
    id: int
    path: Path
    title: str
    artist: str
    album: str
    duration: float
    status: str  # "ok" | "failed" | "pending"
    error: str | None  # readable text (file names as shown by :func:`app.walk.shown`)
    presence: np.ndarray  # (5,) float32 in [0, 1], PARTS order

    @property
    def shown_path(self) -> str:
        """The path for people to read: bytes that are not UTF-8 as ``\\xNN``."""
        return shown(self.path)


@dataclass(frozen=True)
class Result:
    """One hit of a focused search, with its meaning (see :mod:`app.focus`): what the window,
    ``partwise query`` and ``partwise export`` all show."""

    track: Track
    score: float  # match in [0, 1] under the focus, higher = better
    similarity: np.ndarray  # (5,) per-part similarity in [0, 1], PARTS order
    because: str  # the part that makes the track similar
    part_distances: np.ndarray  # (5,) squared distance per part, unweighted
    query_start: float  # seconds: best-matching segment pair under the focus
    match_start: float


@dataclass(frozen=True)
class ScanProgress:
    done: int
    total: int
    current: Path | None
    added: int
    updated: int
    removed: int
    failed: int


class Listed(NamedTuple):
    """A track as a listing of the whole library shows it (:meth:`Library.listing`): the fields
    of :class:`Track`, its path as text and its presence as plain floats."""

    id: int
    path: str
    title: str
    artist: str
    album: str
    duration: float
    status: str
    error: str | None
    presence: tuple[float, ...]


_PRESENCE = f"={N_PARTS}f"  # a stored presence: (5,) float32 in the machine's order, as numpy writes it


def _track(row: Row) -> Track:
    presence = (np.frombuffer(row.presence, np.float32).copy() if row.presence
                else np.zeros(N_PARTS, np.float32))
    return Track(id=row.id, path=Path(row.path), title=row.title, artist=row.artist, album=row.album,
                 duration=float(row.duration), status=row.status, error=row.error, presence=presence)


@dataclass
class _Work:
    """One file on its way through decode -> embed -> store."""

    found: FoundFile
    folder: Path
    is_new: bool
    track_id: int = -1
    tags: Tags | None = None
    clips: Clips | None = None  # dropped as soon as its batch is stored
    error: str | None = None
    temporary: bool = False  # the error may go away by itself (permission, I/O): retry next scan
    vanished: bool = False


# what writing one track to the store can raise; any of them fails that track, not the scan
_STORE_ERRORS = (StoreError, sqlite3.Error, OSError, ValueError)


class Library:
    """A music library folder; see the module docstring."""

    OUTSIDE_CACHE = 8  # outside-the-library query files whose embeddings are kept

    def __init__(self, root: str | Path, weights: str | Path | None = None, device: str | None = None,
                 *, policy: AnalysisPolicy | None = None, index_params: IndexParams | None = None,
                 workers: int | None = None, batch_size: int = 64, graphs: bool = True,
                 graphs_above: int = 0, index: bool = True):
        self.root = Path(root).expanduser().resolve()
        self.store = Store(self.root)
        self.weights_path = Path(weights).expanduser() if weights is not None else DEFAULT_WEIGHTS
        self.device = device
        self.workers = workers or max(os.cpu_count() or 1, 1)
        self.batch_size = batch_size
        self.scan_problems: list[Problem] = []  # from the last scan's walk
        self._embedder: Embedder | None = None
        self._load_lock = threading.Lock()  # lazy model loading
        self._embed_lock = threading.Lock()  # one forward pass at a time
        self._scan_lock = threading.Lock()
        # embeddings of the last few outside-the-library query files, so that moving the focus
        # faders with such a query costs no embedding: key (path, size, mtime_ns, model, policy)
        self._outside: OrderedDict[tuple, TrackEmbedding] = OrderedDict()
        self._outside_lock = threading.Lock()
        self.card: dict = {}
        self.model_sha = self._model_sha()
        self.policy = policy or AnalysisPolicy.for_card(self.card, self.weights_path)
        self._synced: int | None = None  # the store's change count the index is in step with
        self.graphs = graphs  # False: a command that searches a few times and exits (_open_index)
        self._saved_graphs = False
        # index=False: a command that only counts (info) leaves the index unread; info() then
        # answers from the store what the index would hold once brought in step with it
        self.index: VectorIndex | None = self._open_index(index_params, graphs_above) if index else None
        if not index:
            self.graphs = False
            meta = VectorIndex.saved_meta(self.root / "index")
            self._saved_graphs = bool(meta and meta.get("model_sha") == self.model_sha
                                      and meta.get("n_indexed"))

    # ------------------------------------------------------------ model
    def _model_sha(self) -> str | None:
        """Checksum of the weights in use (from its card); the last used one when absent."""
        if self.weights_path.is_file():
            try:
                doc = read_card(self.weights_path)
            except WeightsError as e:
                log.warning("%s", e)
                return self.store.get_meta("model_sha")
            self.card = doc.get("card") or {}
            return doc.get("sha256") or file_sha256(self.weights_path)
        return self.store.get_meta("model_sha")

    def embedder(self) -> Embedder:
        """The model, loaded on first use; LibraryError when the weights are missing or bad."""
        with self._load_lock:
            if self._embedder is None:
                if not self.weights_path.is_file():
                    raise LibraryError(
                        f"{self.weights_path}: model weights not found. Export a trained model "
                        "there (partwise-train export) or pass --weights FILE.")
                from model.embedder import Embedder

                try:
                    emb = Embedder.from_file(self.weights_path, device=self.device,
                                             batch_size=self.batch_size)
                except WeightsError as e:
                    raise LibraryError(str(e)) from e
                if emb.spec.net.out_dim != EMBED_DIM:
                    raise LibraryError(
                        f"{self.weights_path}: gives {emb.spec.net.out_dim}-d embeddings, not the "
                        f"{EMBED_DIM}-d of a whole model (an individual net?); pass --weights FILE")
                try:
                    emb.check(self.policy.window)
                except (RuntimeError, ValueError) as e:
                    raise LibraryError(
                        f"{self.weights_path}: the model does not work ({e}); nothing in the library "
                        "was changed. Use other weights (--weights FILE).") from e
                self._embedder = emb
                self.model_sha = self._embedder.sha256
                self.store.set_meta("model_sha", self.model_sha)
                log.info("model %s (%s) on %s", self.weights_path.name, self.model_sha[:12],
                         self._embedder.device)
            return self._embedder

    def _embed_tracks(self, clips: list[Clips]) -> list[TrackEmbedding]:
        """The one embedding path (one forward pass at a time); LibraryError when it fails (with
        the :class:`NonFiniteError` as its cause when the model answered NaN or infinity)."""
        emb = self.embedder()
        try:
            with self._embed_lock:
                return emb.embed_tracks([c.clips for c in clips], [c.starts for c in clips])
        except (RuntimeError, ValueError) as e:
            raise LibraryError(f"{self.weights_path}: embedding failed ({e})") from e

    # ------------------------------------------------------------ index
    def _open_index(self, params: IndexParams | None, graphs_above: int = 0) -> VectorIndex:
        """The saved index brought in step with the store. Without ``graphs`` its HNSW graphs
        stay on disk and are neither built nor saved: every search is exact, which costs a
        command's few searches less than loading the graphs (bench/commands.py). The same holds
        for a saved index of at most ``graphs_above`` rows (a command that searches a dozen
        times, where exact searches of a small library cost less than loading its graphs)."""
        loaded = VectorIndex.load(self.root / "index", params, graphs=self.graphs,
                                  graphs_above=graphs_above)
        count, in_step = self.store.changes(), False
        if loaded is not None and loaded[1].get("model_sha") == self.model_sha:
            index = loaded[0]
            self._saved_graphs = bool(loaded[1].get("n_indexed"))
            if self.graphs and self._saved_graphs and not index.has_hnsw:
                self.graphs = False  # left on disk for its size: never saved over without them
            # saved in step with the store, which has not changed since
            in_step = count is not None and loaded[1].get("store_changes") == count
        else:
            index = VectorIndex(params)
        if in_step:
            changed, self._synced = False, count
        else:
            changed = self._reconcile(index)
        if not self.graphs:
            return index
        index.maintain()
        if changed and index.has_hnsw:
            self._save_index(index)
        return index

    def _reconcile(self, index: VectorIndex) -> bool:
        """Make ``index`` hold exactly the store's ok tracks (of the current model), and note
        the store's change count read before them (``_synced``: the index is at least as new)."""
        self._synced = self.store.changes()
        db_ids, db_revs = self.store.ok_revs(self.model_sha)
        have_ids, have_revs = index.revs()
        if np.array_equal(db_ids, have_ids) and np.array_equal(db_revs, have_revs):
            return False  # the common case, answered without a dict of every track
        db = dict(zip(db_ids.tolist(), db_revs.tolist(), strict=True))
        have = dict(zip(have_ids.tolist(), have_revs.tolist(), strict=True))
        stale = [i for i, r in have.items() if db.get(i) != r]
        missing = [i for i, r in db.items() if have.get(i) != r]
        index.remove(stale)
        index.reserve(len(missing))  # one copy of the arrays, not one per growth
        for s in range(0, len(missing), 5000):
            got = list(self.store.vectors(missing[s:s + 5000]))
            if got:
                index.upsert([g[0] for g in got], [g[1] for g in got], np.stack([g[2] for g in got]))
        if stale or missing:
            log.info("index: %d stale removed, %d added from the store", len(stale), len(missing))
        return bool(stale or missing)

    def _save_index(self, index: VectorIndex | None = None) -> None:
        if not self.graphs:
            return  # it would replace the saved graphs with none
        index = index or self.index
        if self._synced is None or self.store.changes() != self._synced:
            self._reconcile(index)  # what a reader can then trust without reading every row
        try:
            index.save(self.root / "index", {"model_sha": self.model_sha, "store_changes": self._synced})
        except OSError as e:
            log.warning("%s: could not save the search index (%s); it will be rebuilt", self.root, e)

    # ------------------------------------------------------------ folders and tracks
    def folders(self) -> list[Path]:
        return self.store.folders()

    def add_folder(self, p: str | Path) -> None:
        folder = Path(p).expanduser().resolve()
        if not folder.is_dir():
            raise LibraryError(f"{folder}: not a folder")
        self.store.add_folder(folder)

    def remove_folder(self, p: str | Path) -> None:
        folder = Path(p).expanduser().resolve()
        try:
            with self.store.writer_lock():
                ids = self.store.remove_folder(folder)
        except StoreError as e:
            raise LibraryError(str(e)) from e
        self.index.remove(ids)
        self._save_index()

    def tracks(self) -> list[Track]:
        return [_track(r) for r in self.store.rows()]

    def listing(self, status: str | None = None) -> list[Listed]:
        """Every track (of ``status``) as :class:`Listed`, ordered by id: the whole library
        for an export, read several times faster than :meth:`tracks`."""
        zero = (0.0,) * N_PARTS
        return [Listed(*r[:8], struct.unpack(_PRESENCE, r[8]) if r[8] and len(r[8]) == 4 * N_PARTS
                       else zero) for r in self.store.listing(status)]

    def track(self, id: int) -> Track:
        row = self.store.row(int(id))
        if row is None:
            raise KeyError(f"no track with id {id} in the library {self.root}")
        return _track(row)

    def failures(self) -> list[Track]:
        return [_track(r) for r in self.store.rows("failed")]

    def track_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """ids (N,) int64 and vectors (N, 640) float32 of the ok tracks (current model)."""
        return self.index.vectors()

    def timeline(self, track_id: int) -> Timeline:
        """How present each part is along an analysed track, window by window (the part bars'
        rule, :func:`app.timeline.part_timeline`); LibraryError when it has no stored windows."""
        row = self._analysed_row(track_id)
        try:
            segs, starts = self.store.load_segments(row)
        except StoreError as e:
            raise LibraryError(str(e)) from e
        return part_timeline(segs, starts, self._window_of(row), self.card.get("norm_bias"))

    def journey(self, start: int, end: int | None = None, **options) -> Journey:
        """A part-locked journey over this library (:func:`app.journey.build`; options: steps,
        lock, follow, floor, avoid); the locked parts must be present in the start track."""
        from app.journey import build as build_journey

        return build_journey(self.index, start, end, presence=lambda i: self.track(i).presence,
                             **options)

    def matched_starts(self, a: int, b: int, focus: Mapping[str, float] | Sequence[float]) -> tuple[float, float]:
        """Starts (seconds) of the windows of tracks ``a`` and ``b`` that match best under
        ``focus`` (a journey step's "matched segment", where play-through starts it)."""
        rows = [self.store.row(int(i)) for i in (a, b)]
        if any(r is None or r.status != "ok" for r in rows):
            raise KeyError(f"tracks {a} and {b} must both be analysed tracks of the library {self.root}")
        try:
            (sa, ta), (sb, tb) = (self.store.load_segments(r) for r in rows)
        except StoreError as e:
            raise LibraryError(str(e)) from e
        i, j = best_segment_pair(sa, sb, parse_focus(focus), self.index.scales())
        return float(ta[i]), float(tb[j])

    def find(self, path: str | Path) -> Track | None:
        """The library track at ``path``, if any."""
        row = self.store.row_by_path(Path(path).expanduser().resolve())
        if row is None:
            row = self.store.row_by_path(Path(path).expanduser().absolute())
        return _track(row) if row else None

    # ------------------------------------------------------------ scan
    def scan(self, folders: Sequence[str | Path] | None = None,
             cancel: threading.Event | None = None, *, retry_failed: bool = False) -> Iterator[ScanProgress]:
        """Incremental scan of ``folders`` (registered on the way; default: all registered).

        New files are added, changed ones (size or mtime, or another model or policy) re-embedded,
        deleted ones removed; failed ones retried as the module docstring says (all of them with
        ``retry_failed``). Problems of the walk are in ``scan_problems`` and stored (see
        :meth:`walk_problems`); problems of a file make it a failed track. Yields progress after
        the walk and after each file. Stops early when ``cancel`` is set; what was finished is
        kept. LibraryError, with nothing stored changed, when another process is scanning this
        library or the model is unusable.
        """
        if not self._scan_lock.acquire(blocking=False):
            raise LibraryError(f"{self.root}: a scan is already running")
        try:
            try:
                lock = self.store.writer_lock()
                lock.acquire()
            except StoreError as e:
                raise LibraryError(str(e)) from e
            except OSError as e:
                raise LibraryError(f"{lock.path}: cannot take the library's lock ({e.strerror or e})") from e
            try:
                yield from self._scan(folders, cancel, retry_failed)
            finally:
                lock.release()
        finally:
            self._scan_lock.release()

    def walk_problems(self) -> list[Problem]:
        """The warnings of the last walk of every folder (unreadable folders, loops, broken links)."""
        return [Problem(p, m) for p, m in self.store.problems()]

    def _roots(self, folders: Sequence[str | Path] | None) -> list[Path]:
        if folders is None:
            return self.folders()
        roots = []
        for f in folders:
            folder = Path(f).expanduser().resolve()
            if not folder.is_dir():
                raise LibraryError(f"{folder}: not a folder")
            roots.append(folder)
        return roots

    def _wants(self, old: Row | None, f: FoundFile, retry_failed: bool) -> bool:
        """Whether a found file needs (re)analysis, given its stored row."""
        if old is None or (old.size, old.mtime_ns) != (f.size, f.mtime_ns) or old.status == "pending":
            return True
        other_model = self.model_sha is not None and (
            old.model_sha != self.model_sha or old.policy != self.policy.key())
        if old.status == "ok":
            return other_model
        return retry_failed or old.retry or other_model

    def presence_key(self) -> str:
        """What the stored presence depends on besides the model's tensors: the rule
        (:func:`model.parts.track_presence`) and the card's biases, which a calibration may
        change without touching the tensors."""
        return json.dumps({"rule": PRESENCE_RULE, "norm_bias": self.card.get("norm_bias")})

    def refresh_presence(self) -> int:
        """Recompute the presence of the current model's ok tracks from their stored windows
        when the rule or the biases changed since it was stored; returns how many tracks were
        updated. Needs the writer lock (the scan holds it); a track whose windows cannot be
        read keeps its presence and is logged."""
        key = self.presence_key()
        if self.model_sha is None or self.store.get_meta("presence_key") == key:
            return 0
        bias = self.card.get("norm_bias")
        done = 0
        rows = [r for r in self.store.rows("ok") if r.model_sha == self.model_sha]
        for s in range(0, len(rows), 500):
            batch: list[tuple[int, np.ndarray]] = []
            for tid, got in self.store.load_segments_many(rows[s:s + 500]).items():
                if isinstance(got, StoreError):
                    log.warning("%s", got)
                    continue
                batch.append((tid, track_presence(got[0], bias)))
            done += self.store.set_presence(batch)
        self.store.set_meta("presence_key", key)
        if done:
            log.info("presence of %d tracks recomputed from their windows", done)
        return done

    def _scan(self, folders, cancel, retry_failed) -> Iterator[ScanProgress]:
        roots = self._roots(folders)
        self._clean_temp_files()
        self.store.migrate_segment_files()
        self.refresh_presence()
        self.scan_problems = []
        states = {r.path: r for r in self.store.rows()}
        seen: set[str] = set()
        todo: list[_Work] = []
        gone: list[int] = []
        walked: list[tuple[Path, list[Problem]]] = []
        for root in roots:
            found, problems = walk_audio(root)
            self.scan_problems += problems
            walked.append((root, problems))
            bad_dirs = [p.path for p in problems]
            for f in found:
                key = str(f.path)
                if key in seen:
                    continue
                seen.add(key)
                old = states.get(key)
                if self._wants(old, f, retry_failed):
                    todo.append(_Work(f, root, is_new=old is None))
            for key, row in states.items():
                if (key not in seen and Path(row.folder) == root
                        and not any(Path(key).is_relative_to(b) for b in bad_dirs)):
                    gone.append(row.id)
        del states, seen
        if todo:
            self.embedder()  # a missing or broken model stops here, before anything is changed
        for root, problems in walked:
            self.store.add_folder(root)
            self.store.set_problems(root, [(p.path, p.message) for p in problems])
        removed = self.store.delete_tracks(gone)
        self.index.remove(gone)
        prog = dict(done=0, total=len(todo), current=None, added=0, updated=0, removed=removed, failed=0)
        yield ScanProgress(**prog)
        changed = bool(gone)
        try:
            for w in self._process(todo, cancel):
                changed = True
                prog["done"] += 1
                prog["current"] = w.found.path
                if w.vanished:
                    prog["removed"] += 1
                elif w.error is not None:
                    prog["failed"] += 1
                elif w.is_new:
                    prog["added"] += 1
                else:
                    prog["updated"] += 1
                yield ScanProgress(**prog)
        finally:
            if changed:
                self.index.maintain(force=True)
                self._save_index()
        log.info("scan done: %d added, %d updated, %d removed, %d failed, %d problems",
                 prog["added"], prog["updated"], prog["removed"], prog["failed"], len(self.scan_problems))

    def _clean_temp_files(self) -> None:
        """Temporary window files a schema-2 scan left when it was killed."""
        for tmp in self.store.seg_dir.glob("*/*.tmp"):
            tmp.unlink(missing_ok=True)

    def _decode(self, w: _Work, rate: int) -> _Work:
        """Runs in a pool thread: tags and the analysis windows of one file."""
        from model.audioio import DecodeError, read_clips

        path = w.found.path
        try:
            with open(path, "rb") as fh:  # permission and I/O errors: temporary ones
                fh.read(1)
            from app.tags import read_tags

            w.tags = read_tags(path)
            w.clips = read_clips(path, rate, self.policy.window, self.policy.max_windows)
        except FileNotFoundError:
            w.vanished = True
        except OSError as e:  # permission, I/O: may be gone by the next scan
            w.error, w.temporary = f"{shown(path)}: cannot read the file ({e.strerror or e})", True
        except DecodeError as e:
            w.error = shown(str(e))
            w.temporary = isinstance(e.__cause__, OSError)
        except MemoryError:
            w.error, w.temporary = f"{shown(path)}: out of memory while decoding", True
        except Exception as e:  # a damaged file must never stop the scan
            log.debug("unexpected decode failure", exc_info=True)
            w.error = f"{shown(path)}: decoding failed ({type(e).__name__}: {shown(str(e))})"
        return w

    def _rate(self) -> int:
        return self.embedder().audio.sample_rate

    def _process(self, todo: list[_Work], cancel: threading.Event | None) -> Iterator[_Work]:
        """Decode in a thread pool (ahead of the embedder), embed in batches across tracks.

        Decoded audio is held by at most ``lookahead`` queued files and one batch."""
        if not todo:
            return
        rate = self._rate()  # fails early (LibraryError) when there is no model
        lookahead = 2 * self.workers + 2
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="partwise-decode")
        queue: deque[Future] = deque()
        batch: list[_Work] = []
        it = iter(todo)
        try:
            while True:
                while len(queue) < lookahead:
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    queue.append(pool.submit(self._decode, nxt, rate))
                if not queue or (cancel is not None and cancel.is_set()):
                    break
                w = queue.popleft().result()
                if w.vanished:
                    self._drop_vanished(w)
                    yield w
                elif w.error is not None:
                    self._record_failure(w)
                    yield w
                elif not self._reserve(w):
                    yield w
                else:
                    batch.append(w)
                    if sum(len(b.clips.clips) for b in batch) >= self.batch_size:
                        yield from self._flush(batch)
                        batch = []
            if batch and not (cancel is not None and cancel.is_set()):
                yield from self._flush(batch)
        finally:
            for f in queue:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _reserve(self, w: _Work) -> bool:
        """Give a new file its id (walk order) as a ``pending`` row; False when even that
        cannot be stored (then it is a failure). Stored files keep their row untouched until
        their new analysis is stored."""
        if not w.is_new:
            return True
        try:
            w.track_id = self.store.begin_track(w.found.path, w.folder, w.found.size, w.found.mtime_ns)
            return True
        except _STORE_ERRORS as e:
            w.error = f"{shown(w.found.path)}: could not be stored in the library ({e})"
            w.temporary = True
            self._record_failure(w)
            return False

    def _drop_vanished(self, w: _Work) -> None:
        try:
            row = self.store.row_by_path(w.found.path)
            if row is not None:
                self.store.delete_tracks([row.id])
                self.index.remove([row.id])
        except _STORE_ERRORS as e:
            log.warning("%s: could not forget a vanished file (%s)", shown(w.found.path), e)
        log.info("%s: disappeared during the scan; skipped", shown(w.found.path))

    def _record_failure(self, w: _Work) -> None:
        """Store ``w.error`` as the file's failure; when even that cannot be stored, the
        problem goes to ``scan_problems`` and the scan goes on."""
        w.clips = None
        t = w.tags
        try:
            tid = self.store.begin_track(w.found.path, w.folder, w.found.size, w.found.mtime_ns)
            self.store.finish_failed(
                tid, w.error or "unknown error", title=t.title if t else w.found.path.stem,
                artist=t.artist if t else "", album=t.album if t else "",
                duration=(t.duration or 0.0) if t else 0.0, retry=w.temporary,
                model_sha=self.model_sha, policy=self.policy.key())
            self.index.remove([tid])
        except _STORE_ERRORS as e:
            self.scan_problems.append(Problem(w.found.path, f"could not record its failure ({e}): {w.error}"))
        log.warning("%s", w.error)

    def _flush(self, batch: list[_Work]) -> Iterator[_Work]:
        """Embed a batch and store each track; the batch's audio is dropped on the way out."""
        try:
            self._store_batch(batch, self._embed_batch(batch))
        finally:
            for w in batch:
                w.clips = None
        yield from batch

    def _embed_batch(self, batch: list[_Work]) -> list[TrackEmbedding | None]:
        """Embeddings of a batch; None for a track the model answered NaN or infinity for.
        LibraryError (the scan stops, nothing stored) when the model fails the whole batch."""
        try:
            return list(self._embed_tracks([w.clips for w in batch]))
        except LibraryError as e:
            from model.embedder import NonFiniteError

            bad = e.__cause__.tracks if isinstance(e.__cause__, NonFiniteError) else []
            if not bad or len(bad) == len(batch):
                self.store.delete_tracks([w.track_id for w in batch if w.is_new and w.track_id >= 0])
                raise LibraryError(f"{e}; the scan stopped and nothing in the library was changed. "
                                   "Check the weights (--weights FILE).") from e.__cause__
        keep = [i for i in range(len(batch)) if i not in bad]
        good = iter(self._embed_tracks([batch[i].clips for i in keep]))
        return [None if i in bad else next(good) for i in range(len(batch))]

    def _store_batch(self, batch: list[_Work], embedded: list[TrackEmbedding | None]) -> None:
        ids, revs, vecs = [], [], []
        for w, e in zip(batch, embedded, strict=True):
            if e is None:
                w.error = (f"{shown(w.found.path)}: the model answered NaN or infinity for this file; "
                           "it is tried again with other weights")
                self._record_failure(w)
                continue
            try:
                w.track_id = self.store.begin_track(w.found.path, w.folder, w.found.size, w.found.mtime_ns)
                rev = self.store.finish_ok(
                    w.track_id, title=w.tags.title, artist=w.tags.artist, album=w.tags.album,
                    duration=w.clips.info.duration, model_sha=self.model_sha, policy=self.policy.key(),
                    vector=e.track, presence=e.presence, segments=e.segments, starts=e.starts)
            except _STORE_ERRORS as err:
                w.error = f"{shown(w.found.path)}: could not be stored in the library ({err})"
                w.temporary = True
                self._record_failure(w)
                continue
            ids.append(w.track_id)
            revs.append(rev)
            vecs.append(e.track)
        if ids:
            self.index.upsert(ids, revs, np.stack(vecs))
            self.index.maintain()

    # ------------------------------------------------------------ search
    def search(self, query: int | str | Path, focus: Mapping[str, float] | Sequence[float],
               k: int = 10, at: tuple[float, float] | None = None) -> list[Result]:
        """The k tracks closest to ``query`` under ``focus`` (see :mod:`app.focus`).

        query: a track id in the library, or an audio file (a library file is used as its
        track; any other is embedded on the fly and not added). The query track never comes back.
        at: a stretch (start, end) in seconds of the query track: only its analysed windows make
        the query (:func:`app.timeline.moment`), "tracks whose bass sounds like this bit".
        """
        w = parse_focus(focus)
        if k <= 0:
            return []
        q, q_segs, q_starts, q_presence, exclude, q_window = self._query(query)
        if at is not None:
            m = moment(q_segs, q_starts, q_window, float(at[0]), float(at[1]))
            q, q_segs, q_starts = m.vector, m.segments, m.starts
            q_presence = track_presence(m.segments, self.card.get("norm_bias"))
        hits = self.index.search(q, w, k, exclude=exclude)
        scales = self.index.scales()
        rows = self.store.rows_for(hits.ids.tolist())  # one read for every hit's row and windows
        windows = self.store.load_segments_many(rows.values())
        readable = {}
        for tid, got in windows.items():
            if isinstance(got, StoreError):
                log.warning("%s", got)
            else:
                readable[tid] = got
        pairs = dict(zip(readable, best_segment_pairs(q_segs, [g[0] for g in readable.values()], w, scales),
                         strict=True))
        out = []
        for tid, score, parts, sim in zip(hits.ids.tolist(), hits.scores, hits.parts, hits.similarity,
                                          strict=True):
            row = rows.get(tid)
            if row is None:  # removed since the index answered
                continue
            qs = ms = 0.0
            if tid in pairs:
                i, j = pairs[tid]
                qs, ms = float(q_starts[i]), float(readable[tid][1][j])
            elif tid not in windows:
                log.warning("track %d (%s) has no stored segments", tid, shown(row.path))
            track = _track(row)
            out.append(Result(track=track, score=float(score), similarity=sim,
                              because=PARTS[because(sim, w, q_presence, track.presence)],
                              part_distances=parts, query_start=qs, match_start=ms))
        return out

    def _analysed_row(self, track_id: int) -> Row:
        """The stored row of an analysed track; KeyError for an unknown id, LibraryError for a
        track without an embedding (failed or not analysed yet)."""
        row = self.store.row(int(track_id))
        if row is None:
            raise KeyError(f"no track with id {track_id} in the library {self.root}")
        if row.status != "ok":
            raise LibraryError(f"track {row.id} ({shown(row.path)}) has no embedding: "
                               f"{row.error or 'not analysed yet'}")
        return row

    def _window_of(self, row: Row) -> float:
        """The window length (s) a stored track was analysed with (its policy key), so that its
        windows are placed right even before a rescan brings it to the current policy."""
        return AnalysisPolicy.window_in(row.policy) or self.policy.window

    def _query(self, query: int | str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                       set[int], float]:
        """Query vector (640,), its segments (n, 640), starts (n,) and presence (5,), ids to
        leave out, and the length (s) of its windows."""
        if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
            row = self._analysed_row(int(query))
        else:
            t = self.find(query)
            row = self.store.row(t.id) if t is not None and t.status == "ok" else None
            if row is None:
                return self._embed_file(Path(query))
        vec = self.index.vector(row.id)
        if vec is None:
            got = list(self.store.vectors([row.id]))
            vec = got[0][2]
        try:
            segs, starts = self.store.load_segments(row)
        except StoreError as e:
            log.warning("%s", e)
            segs, starts = vec[None, :], np.zeros(1, np.float32)
        return vec, segs, starts, _track(row).presence, {row.id}, self._window_of(row)

    def _embed_file(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                               set[int], float]:
        """Embed a file outside the library; the last :attr:`OUTSIDE_CACHE` files' embeddings
        are kept, keyed by path, size, mtime, the weights' checksum and the analysis policy, so
        a new focus for the same file (a fader move) re-ranks without decoding or embedding."""
        try:
            st = path.stat()
        except FileNotFoundError:
            raise LibraryError(f"{path}: no such file, and not a track id in the library") from None
        except OSError as e:
            raise LibraryError(f"{path}: cannot read the file ({e.strerror or e})") from e
        from model.audioio import DecodeError, read_clips

        where = str(path.expanduser().absolute())
        with self._outside_lock:
            key = (where, st.st_size, st.st_mtime_ns, self.model_sha, self.policy.key())
            got = self._outside.get(key)
            if got is not None:
                self._outside.move_to_end(key)
                return got.track, got.segments, got.starts, got.presence, set(), self.policy.window
        try:
            clips = read_clips(path, self._rate(), self.policy.window, self.policy.max_windows)
        except DecodeError as e:
            raise LibraryError(str(e)) from e
        (e,) = self._embed_tracks([clips])
        for a in (e.track, e.segments, e.starts, e.presence):
            a.setflags(write=False)  # shared by later searches: nobody may change them
        with self._outside_lock:
            # the model's checksum is known for sure once it has run: file it under that
            key = (where, st.st_size, st.st_mtime_ns, self.model_sha, self.policy.key())
            self._outside[key] = e
            self._outside.move_to_end(key)
            while len(self._outside) > self.OUTSIDE_CACHE:
                self._outside.popitem(last=False)
        return e.track, e.segments, e.starts, e.presence, set(), self.policy.window

    # ------------------------------------------------------------ lifecycle
    def info(self) -> dict:
        """Counts and locations for ``partwise info``."""
        counts = {s: self.store.count(s) for s in ("ok", "failed", "pending")}
        indexed = len(self.index) if self.index is not None else self.store.count_ok(self.model_sha)
        stale = counts["ok"] - indexed if self.model_sha else 0  # the index holds the rest
        return {"library": shown(self.root), "folders": [shown(f) for f in self.folders()],
                "tracks": sum(counts.values()), **counts, "stale_model": stale,
                "indexed": indexed, "hnsw": self.index.has_hnsw if self.graphs else self._saved_graphs,
                "weights": shown(self.weights_path), "weights_present": self.weights_path.is_file(),
                "model_sha": self.model_sha, "policy": self.policy.key()}

    def close(self) -> None:
        self.store.close()
        self._embedder = None
        with self._outside_lock:
            self._outside.clear()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
