"""The library's store: one SQLite database (WAL) beside the search index.

Layout of a library folder::

    library.sqlite        tracks, tags, status, errors, track vectors, presence, file locations,
                          the warnings of the last walk of each folder, and (table ``segments``)
                          each analysed track's window embeddings (N, 640) as int8 with a scale
                          per window and part (float16 or float32 in rows written before, still
                          read; :func:`encode_windows`) with their start times (N,)
    scan.lock             held by the one process that writes (scans) the library; holds its pid
    segments/XX/ID.npz    the window embeddings as libraries of schema 2 kept them, one file a
                          track: still read, moved into the table by the next scan
    index/                the search indices (see :mod:`app.index`)

Every write is atomic: a track's row and its windows are committed in one transaction. A
process killed at any moment leaves either the old or the new state of each track; tracks
caught half-way stay ``pending`` and the next scan redoes them. The windows of a track live in
the database rather than in a file of their own because a query reads them for every hit: one
indexed read of all hits' windows costs a small fraction of opening ten files.
Each thread gets its own connection; writes are serialized by a lock. One process writes at a
time (:class:`WriterLock`); any number read, also during a scan (WAL).

Paths are stored as text when they are valid UTF-8 and as their raw bytes (a BLOB) when they
are not, so every file name round-trips exactly; free text (tags, errors) is stored as
:func:`app.walk.shown` writes it. The folder and the database are created readable by their
owner only. ``schema_version`` in ``meta`` says which layout a database has: an older one is
migrated on open, a newer or unknown one refused with a message.
"""

from __future__ import annotations

import datetime
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.walk import shown
from model.parts import EMBED_DIM, N_PARTS, SUBSPACE_DIM

log = logging.getLogger(__name__)

DB_NAME = "library.sqlite"
LOCK_NAME = "scan.lock"
SCHEMA_VERSION = 4  # 2: tracks.retry, the problems table; 3: the segments table; 4: changes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS folders (path TEXT PRIMARY KEY, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    folder TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'pending')),
    error TEXT,
    title TEXT NOT NULL DEFAULT '',
    artist TEXT NOT NULL DEFAULT '',
    album TEXT NOT NULL DEFAULT '',
    duration REAL NOT NULL DEFAULT 0,
    model_sha TEXT,
    policy TEXT,
    rev INTEGER NOT NULL DEFAULT 0,
    vector BLOB,
    presence BLOB,
    segfile TEXT,
    updated REAL NOT NULL,
    retry INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS problems (folder TEXT NOT NULL, path TEXT NOT NULL, message TEXT NOT NULL);
-- a count of the changes to the tracks that the search index mirrors, kept by SQLite itself:
-- an index saved with the count it reflects is in step while the count is unchanged
CREATE TABLE IF NOT EXISTS changes (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS tracks_added AFTER INSERT ON tracks
    BEGIN UPDATE changes SET n = n + 1 WHERE name = 'tracks'; END;
CREATE TRIGGER IF NOT EXISTS tracks_deleted AFTER DELETE ON tracks
    BEGIN UPDATE changes SET n = n + 1 WHERE name = 'tracks'; END;
CREATE TRIGGER IF NOT EXISTS tracks_changed AFTER UPDATE OF id, status, model_sha, rev ON tracks
    BEGIN UPDATE changes SET n = n + 1 WHERE name = 'tracks'; END;
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,  -- tracks.id
    starts BLOB NOT NULL,    -- (N,) float32 start seconds
    vecs BLOB NOT NULL       -- (N, 640) window embeddings, int8 + scales (encode_windows)
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS tracks_folder ON tracks(folder);
CREATE INDEX IF NOT EXISTS tracks_ok ON tracks(status, model_sha, rev);
DROP INDEX IF EXISTS tracks_status;
"""
# columns a library of an older layout may lack, and how to add them (ALTER TABLE ... ADD)
_ADDABLE = {
    "error": "TEXT", "title": "TEXT NOT NULL DEFAULT ''", "artist": "TEXT NOT NULL DEFAULT ''",
    "album": "TEXT NOT NULL DEFAULT ''", "duration": "REAL NOT NULL DEFAULT 0", "model_sha": "TEXT",
    "policy": "TEXT", "rev": "INTEGER NOT NULL DEFAULT 0", "vector": "BLOB", "presence": "BLOB",
    "segfile": "TEXT", "updated": "REAL NOT NULL DEFAULT 0", "retry": "INTEGER NOT NULL DEFAULT 0",
}
_REQUIRED = ("id", "path", "folder", "size", "mtime_ns", "status")


def db_path(p: str | os.PathLike) -> str | bytes:
    """How a path is stored: text when valid UTF-8, else its raw bytes (lossless)."""
    s = os.fspath(p)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(s)
    return s


def path_from_db(v: str | bytes) -> str:
    """The inverse of :func:`db_path`: the path as Python's file functions take it."""
    return v if isinstance(v, str) else os.fsdecode(v)


PAGE_SIZE = 16384
SEGMENTS_INSERT = "INSERT OR REPLACE INTO segments(id, starts, vecs) VALUES(?, ?, ?)"


WINDOWS_CACHE_BYTES = 32 << 20  # decoded windows kept by Store.load_segments_many


def _windows_key(row: Row) -> tuple:
    """What identifies a track's stored windows: a rescan or a new model bumps ``rev``; the
    rest guards against a removed track's id being given to a new file."""
    return (row.id, row.rev, row.path, row.size, row.mtime_ns, row.model_sha, row.policy)


WINDOW_SCALE_BYTES = 4 * N_PARTS  # a window's five part scales (float32) before its int8 codes


def encode_windows(segments: np.ndarray) -> bytes:
    """Window embeddings (N, 640) as stored: each window's five part scales (N, 5) float32, then
    its values as int8 multiples of them (N, 640), rounded. A part's scale is its largest
    magnitude / 127, so every value comes back within half a step (1/254 of that part's largest
    magnitude in that window): 660 bytes a window where float16 takes 1,280, half the bytes for
    the page cache to hold and for a query to read per hit. Windows with a value that is
    not finite are kept exactly, as float32. :func:`decode_windows` tells the three layouts (and
    float16, which libraries wrote before) apart by length."""
    segs = np.ascontiguousarray(segments, np.float32).reshape(-1, N_PARTS, SUBSPACE_DIM)
    if not np.isfinite(segs).all():
        return segs.tobytes()
    scale = np.abs(segs).max(axis=2) / np.float32(127)
    codes = np.rint(segs / np.where(scale > 0, scale, 1)[..., None])
    return scale.astype(np.float32).tobytes() + np.clip(codes, -127, 127).astype(np.int8).tobytes()


def decode_windows(n: int, blob: bytes) -> np.ndarray | None:
    """(n, 640) float32 windows from a stored blob of ``n`` windows; None for a length that no
    layout has (a damaged row)."""
    if n <= 0:
        return None
    if len(blob) == n * (WINDOW_SCALE_BYTES + EMBED_DIM):
        scale = np.frombuffer(blob, np.float32, n * N_PARTS).reshape(n, N_PARTS, 1)
        codes = np.frombuffer(blob, np.int8, offset=n * WINDOW_SCALE_BYTES).reshape(n, N_PARTS, SUBSPACE_DIM)
        return (codes * scale).reshape(n, EMBED_DIM)
    width = {2 * n * EMBED_DIM: np.float16, 4 * n * EMBED_DIM: np.float32}.get(len(blob))
    if width is None:
        return None
    return np.frombuffer(blob, width).reshape(n, EMBED_DIM).astype(np.float32, copy=False)


def segment_params(track_id: int, segments: np.ndarray, starts: np.ndarray) -> tuple[int, bytes, bytes]:
    """The parameters of :data:`SEGMENTS_INSERT` for one track's windows (:func:`encode_windows`)."""
    return (int(track_id), np.ascontiguousarray(starts, dtype=np.float32).tobytes(), encode_windows(segments))


def _in_chunks(ids: list[int], size: int = 900) -> Iterator[tuple[list[int], str]]:
    """``ids`` a chunk at a time with the ``?, ?, ...`` of an ``IN (...)`` for it (SQLite caps
    the parameters of one statement)."""
    for i in range(0, len(ids), size):
        chunk = ids[i:i + size]
        yield chunk, ",".join("?" * len(chunk))


class StoreError(RuntimeError):
    """The library database is unusable; the message names the file."""


@dataclass(frozen=True)
class Row:
    """One ``tracks`` row as stored (vectors decoded lazily by the caller)."""

    id: int
    path: str
    folder: str
    size: int
    mtime_ns: int
    status: str
    error: str | None
    title: str
    artist: str
    album: str
    duration: float
    model_sha: str | None
    policy: str | None
    rev: int
    presence: bytes | None
    segfile: str | None
    retry: bool = False  # the error may be temporary (permission, I/O): retried on every scan


_ROW_COLS = ("id, path, folder, size, mtime_ns, status, error, title, artist, album, duration, "
             "model_sha, policy, rev, presence, segfile, retry")


def _row(r: tuple) -> Row:
    return Row(r[0], path_from_db(r[1]), path_from_db(r[2]), *r[3:16], bool(r[16]))


class WriterLock:
    """One writer per library: an advisory lock on ``scan.lock`` that names its holder.

    The operating system drops the lock when its process ends, however it ends, so a lock
    left by a killed scan is taken over by the next one (its stale pid is logged).
    """

    def __init__(self, root: Path):
        self.path = root / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StoreError naming the process that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock_fd(fd)
        except OSError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise StoreError(f"{self.path.parent}: another scan is writing to this library "
                             f"({holder}); wait for it to finish, or stop it and scan again") from None
        old = os.read(fd, 200).decode("utf-8", "replace").strip()
        if old:
            log.info("%s: recovered a stale lock (%s)", self.path, old)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()}, started {started}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _lock_fd(fd: int) -> None:
    """Non-blocking exclusive lock on an open file; OSError when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)



class Store:
    """SQLite + segment files of one library folder. Safe to use from several threads."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.db_path = self.root / DB_NAME
        try:
            if not self.root.is_dir():
                self.root.mkdir(parents=True, mode=0o700)
                self.root.chmod(0o700)  # the library says what its owner listens to
            if not self.db_path.exists():
                os.close(os.open(self.db_path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as e:
            raise StoreError(f"{self.root}: cannot create the library folder ({e.strerror or e})") from e
        self.seg_dir = self.root / "segments"
        self._local = threading.local()
        # decoded windows of the tracks read last, keyed by what a rewrite of them changes: a
        # fader move re-reads mostly the same hits' windows (and the query track's every time)
        self._windows: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._windows_bytes = 0
        self._windows_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        with self._write_lock:
            try:
                self._open_schema()
            except sqlite3.DatabaseError as e:
                self.close()
                raise StoreError(f"{self.db_path}: not a Partwise library database ({e})") from e
            except StoreError:
                self.close()
                raise

    def _open_schema(self) -> None:
        """Create, check and migrate the layout (see the module docstring)."""
        con = self._con()
        con.executescript(_SCHEMA)
        ver = self.get_meta("schema_version")
        if ver is not None and not ver.isdigit():
            raise StoreError(f"{self.db_path}: unknown library schema version {ver!r}; "
                             "move the folder away and scan again")
        if ver is not None and int(ver) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.db_path}: written by a newer Partwise (schema {ver} > {SCHEMA_VERSION}); "
                "update Partwise, or use another --library")
        have = {r[1] for r in con.execute("PRAGMA table_info(tracks)")}
        lacking = [c for c in _REQUIRED if c not in have]
        if lacking:
            raise StoreError(f"{self.db_path}: the tracks table lacks {', '.join(lacking)} and cannot "
                             "be migrated; move the folder away and scan again")
        missing = [c for c in _ADDABLE if c not in have]
        if missing or ver != str(SCHEMA_VERSION):
            with self.transaction() as tx:
                for c in missing:
                    tx.execute(f"ALTER TABLE tracks ADD COLUMN {c} {_ADDABLE[c]}")
                # the count starts at random, so that a new library.sqlite beside an old index
                # folder never meets the count that index was saved with
                tx.execute("INSERT OR IGNORE INTO changes(name, n) VALUES('tracks', ?)",
                           (int.from_bytes(os.urandom(6), "big"),))
                tx.execute("INSERT INTO meta(key, value) VALUES('schema_version', ?) ON CONFLICT(key) "
                           "DO UPDATE SET value=excluded.value", (str(SCHEMA_VERSION),))
            if ver is not None or missing:
                log.info("%s: library migrated from schema %s to %d (added: %s)", self.db_path,
                         ver or "unversioned", SCHEMA_VERSION, ", ".join(missing) or "nothing")
        con.executescript(_INDEXES)

    def writer_lock(self) -> WriterLock:
        """``with store.writer_lock():`` this process is the library's one writer (see
        :class:`WriterLock`)."""
        return WriterLock(self.root)

    # ------------------------------------------------------------ connections
    def _con(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.db_path}: library is closed")
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None,
                                      check_same_thread=False)
                # a new database gets 16 KB pages (an existing one keeps its own): a track's
                # windows (6.6 KB) then lie in one page instead of a leaf and an overflow page:
                # a query's 11 tracks, inner pages cached and leaves not, read in 1.7-1.9 ms
                # instead of 2.2-2.4 (100k tracks)
                con.execute(f"PRAGMA page_size={PAGE_SIZE}")
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
                con.execute("PRAGMA foreign_keys=ON")
                # pages are read with read(), not through a memory map (SQLite's mmap_size stays
                # 0): a query reads a dozen tracks' rows and windows from anywhere in the file,
                # and a fault in a map reads the whole readahead window around the page (8 MB
                # on some disks), 4-5 ms for one track's windows where read() takes 0.35 ms;
                # from the page cache the map saves 0.07 ms a query
                con.execute("PRAGMA mmap_size=0")
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{self.db_path}: cannot open the database ({e})") from e
            self._local.con = con
            with self._conns_lock:
                self._conns.append(con)
        return con

    def close(self) -> None:
        with self._conns_lock:
            for con in self._conns:
                try:
                    con.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._closed = True

    def _write(self, sql: str, params: Iterable = ()) -> sqlite3.Cursor:
        with self._write_lock:
            return self._con().execute(sql, tuple(params))

    class _Tx:
        def __init__(self, store: Store):
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._write_lock.acquire()
            con = self.store._con()
            con.execute("BEGIN IMMEDIATE")
            return con

        def __exit__(self, et, ev, tb) -> None:
            con = self.store._con()
            try:
                con.execute("COMMIT" if et is None else "ROLLBACK")
            finally:
                self.store._write_lock.release()

    def transaction(self) -> Store._Tx:
        """``with store.transaction() as con:`` one atomic write."""
        return Store._Tx(self)

    # ------------------------------------------------------------ meta and folders
    def get_meta(self, key: str) -> str | None:
        r = self._con().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return r[0] if r else None

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT INTO meta(key, value) VALUES(?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def changes(self) -> int | None:
        """How often the tracks the search index mirrors (their ids, status, model, rev) have
        changed, counted from a random start by triggers; None in a library without the count."""
        try:
            r = self._con().execute("SELECT n FROM changes WHERE name='tracks'").fetchone()
        except sqlite3.OperationalError:
            return None
        return int(r[0]) if r else None

    def folders(self) -> list[Path]:
        rows = self._con().execute("SELECT path FROM folders").fetchall()
        return sorted(Path(path_from_db(r[0])) for r in rows)

    def add_folder(self, folder: Path) -> None:
        self._write("INSERT OR IGNORE INTO folders(path, added) VALUES(?, ?)", (db_path(folder), time.time()))

    def remove_folder(self, folder: Path) -> list[int]:
        """Forget a folder and its tracks; returns the removed track ids."""
        with self.transaction() as con:
            key = db_path(folder)
            rows = con.execute("SELECT id, segfile FROM tracks WHERE folder=?", (key,)).fetchall()
            con.execute("DELETE FROM segments WHERE id IN (SELECT id FROM tracks WHERE folder=?)", (key,))
            con.execute("DELETE FROM tracks WHERE folder=?", (key,))
            con.execute("DELETE FROM folders WHERE path=?", (key,))
            con.execute("DELETE FROM problems WHERE folder=?", (key,))
        self._unlink_segfiles(r[1] for r in rows)
        return [int(r[0]) for r in rows]

    # ------------------------------------------------------------ tracks
    def row(self, track_id: int) -> Row | None:
        r = self._con().execute(f"SELECT {_ROW_COLS} FROM tracks WHERE id=?", (int(track_id),)).fetchone()
        return _row(r) if r else None

    def rows_for(self, ids: Iterable[int]) -> dict[int, Row]:
        """id -> row of each given id that exists, in one read."""
        ids = [int(i) for i in ids]
        out: dict[int, Row] = {}
        for chunk, q in _in_chunks(ids):
            for r in self._con().execute(f"SELECT {_ROW_COLS} FROM tracks WHERE id IN ({q})", chunk):
                out[int(r[0])] = _row(r)
        return out

    def row_by_path(self, path: str | os.PathLike) -> Row | None:
        r = self._con().execute(f"SELECT {_ROW_COLS} FROM tracks WHERE path=?", (db_path(path),)).fetchone()
        return _row(r) if r else None

    def _tracks(self, cols: str, status: str | None) -> sqlite3.Cursor:
        """``cols`` of every track (of ``status``), ordered by id."""
        if status is None:
            return self._con().execute(f"SELECT {cols} FROM tracks ORDER BY id")
        return self._con().execute(f"SELECT {cols} FROM tracks WHERE status=? ORDER BY id", (status,))

    def rows(self, status: str | None = None) -> list[Row]:
        return [_row(r) for r in self._tracks(_ROW_COLS, status)]

    def listing(self, status: str | None = None) -> list[tuple]:
        """(id, path, title, artist, album, duration, status, error, presence blob) of every
        track (of ``status``), ordered by id: what a listing of the whole library shows, without
        building a :class:`Row` for each (10k rows: a fifth of ``partwise export``)."""
        cols = "id, path, title, artist, album, duration, status, error, presence"
        return [(r[0], path_from_db(r[1]), *r[2:]) for r in self._tracks(cols, status)]

    def count(self, status: str | None = None) -> int:
        if status is None:
            return self._con().execute("SELECT COUNT(*) FROM tracks").fetchone()[0]
        return self._con().execute("SELECT COUNT(*) FROM tracks WHERE status=?", (status,)).fetchone()[0]

    def begin_track(self, path: Path, folder: Path, size: int, mtime_ns: int) -> int:
        """Insert or reset a row to ``pending`` before its work starts; returns the id."""
        with self.transaction() as con:
            con.execute(
                "INSERT INTO tracks(path, folder, size, mtime_ns, status, title, updated) "
                "VALUES(?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT(path) DO UPDATE SET "
                "folder=excluded.folder, size=excluded.size, mtime_ns=excluded.mtime_ns, "
                "status='pending', error=NULL, retry=0, updated=excluded.updated",
                (db_path(path), db_path(folder), size, mtime_ns, shown(path.stem), time.time()))
            return int(con.execute("SELECT id FROM tracks WHERE path=?", (db_path(path),)).fetchone()[0])

    def finish_ok(self, track_id: int, *, title: str, artist: str, album: str, duration: float,
                  model_sha: str, policy: str, vector: np.ndarray, presence: np.ndarray,
                  segments: np.ndarray, starts: np.ndarray) -> int:
        """Commit the row as ``ok`` with its windows, in one transaction; returns its rev.

        vector: (640,) float32; presence: (5,) float32; segments: (N, 640); starts: (N,).
        """
        assert vector.shape == (EMBED_DIM,) and presence.shape == (N_PARTS,)
        assert segments.ndim == 2 and segments.shape[1] == EMBED_DIM and starts.shape == (len(segments),)
        with self.transaction() as con:
            old = con.execute("SELECT segfile FROM tracks WHERE id=?", (track_id,)).fetchone()
            con.execute(
                "UPDATE tracks SET status='ok', error=NULL, title=?, artist=?, album=?, duration=?, "
                "model_sha=?, policy=?, rev=rev+1, vector=?, presence=?, segfile=NULL, updated=? WHERE id=?",
                (shown(title), shown(artist), shown(album), float(duration), model_sha, policy,
                 np.ascontiguousarray(vector, dtype=np.float32).tobytes(),
                 np.ascontiguousarray(presence, dtype=np.float32).tobytes(), time.time(), track_id))
            con.execute(SEGMENTS_INSERT, segment_params(track_id, segments, starts))
            r = con.execute("SELECT rev FROM tracks WHERE id=?", (track_id,)).fetchone()
        if r is None:
            raise StoreError(f"{self.db_path}: track {track_id} vanished while being stored")
        self._unlink_segfiles([old[0] if old else None])
        return int(r[0])

    def finish_failed(self, track_id: int, error: str, *, title: str = "", artist: str = "",
                      album: str = "", duration: float = 0.0, retry: bool = False,
                      model_sha: str | None = None, policy: str | None = None) -> str | None:
        """Mark a row failed (keeping no vectors); returns the old segment file to delete.

        retry: the error may be temporary (the next scan tries again); model_sha and policy:
        the model and analysis that failed (another one tries again)."""
        with self.transaction() as con:
            old = con.execute("SELECT segfile FROM tracks WHERE id=?", (track_id,)).fetchone()
            con.execute("DELETE FROM segments WHERE id=?", (track_id,))
            con.execute(
                "UPDATE tracks SET status='failed', error=?, title=COALESCE(NULLIF(?, ''), title), "
                "artist=?, album=?, duration=?, vector=NULL, presence=NULL, segfile=NULL, "
                "rev=rev+1, retry=?, model_sha=?, policy=?, updated=? WHERE id=?",
                (shown(error), shown(title), shown(artist), shown(album), float(duration), int(retry),
                 model_sha, policy, time.time(), track_id))
        seg = old[0] if old else None
        self._unlink_segfiles([seg])
        return seg

    def delete_tracks(self, ids: Iterable[int]) -> int:
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        segs: list[str | None] = []
        with self.transaction() as con:
            for chunk, q in _in_chunks(ids, 500):
                segs += [r[0] for r in con.execute(f"SELECT segfile FROM tracks WHERE id IN ({q})", chunk)]
                con.execute(f"DELETE FROM tracks WHERE id IN ({q})", chunk)
                con.execute(f"DELETE FROM segments WHERE id IN ({q})", chunk)
        self._unlink_segfiles(segs)
        return len(ids)

    def set_problems(self, folder: Path, problems: Iterable[tuple[Path, str]]) -> None:
        """Replace the stored walk warnings of ``folder`` with ``(path, message)`` pairs."""
        with self.transaction() as con:
            con.execute("DELETE FROM problems WHERE folder=?", (db_path(folder),))
            con.executemany("INSERT INTO problems(folder, path, message) VALUES(?, ?, ?)",
                            [(db_path(folder), db_path(p), shown(m)) for p, m in problems])

    def problems(self) -> list[tuple[Path, str]]:
        """The stored walk warnings of every folder: ``(path, message)``."""
        cur = self._con().execute("SELECT path, message FROM problems ORDER BY rowid")
        return [(Path(path_from_db(p)), m) for p, m in cur]

    def segfile_for(self, track_id: int) -> str:
        """Where a schema-2 library kept a track's window file (relative to the root)."""
        return f"segments/{track_id % 256:02x}/{track_id}.npz"

    def _unlink_segfiles(self, rels: Iterable[str | None]) -> None:
        for rel in rels:
            if rel:
                try:
                    (self.root / rel).unlink(missing_ok=True)
                except OSError as e:
                    log.warning("%s: could not delete a stale segment file (%s)", self.root / rel, e)

    def load_segments(self, row: Row) -> tuple[np.ndarray, np.ndarray]:
        """(N, 640) float32 window embeddings and (N,) start seconds of an ok track."""
        got = self.load_segments_many([row]).get(row.id)
        if isinstance(got, StoreError):
            raise got
        if got is None:
            raise StoreError(f"track {row.id} ({row.path}) has no stored segments")
        return got

    def load_segments_many(self, rows: Iterable[Row]) -> dict[int, tuple[np.ndarray, np.ndarray] | StoreError]:
        """The windows of several tracks in one read: id -> (segments, starts), or the
        StoreError that says why that track's are unreadable; ids without stored windows are
        left out. Windows of a library of schema 2 are read from their file."""
        rows = list(rows)
        out: dict[int, tuple[np.ndarray, np.ndarray] | StoreError] = {}
        if not rows:
            return out
        with self._windows_lock:
            for row in rows:
                key = _windows_key(row)
                got = self._windows.get(key)
                if got is not None:
                    self._windows.move_to_end(key)
                    out[row.id] = got
        todo = [r for r in rows if r.id not in out]
        if not todo:
            return out
        read: dict[int, tuple[np.ndarray, np.ndarray] | StoreError] = {}
        con = self._con()
        for chunk, q in _in_chunks([r.id for r in todo]):
            for tid, starts, vecs in con.execute(f"SELECT id, starts, vecs FROM segments WHERE id IN ({q})", chunk):
                read[int(tid)] = self._decode_segments(int(tid), starts, vecs)
        for row in todo:
            if row.id not in read and row.segfile:
                read[row.id] = self._read_segfile(row)
        with self._windows_lock:
            for row in todo:
                got = read.get(row.id)
                if got is not None and not isinstance(got, StoreError):
                    self._keep_windows(_windows_key(row), got)
        out.update(read)
        return out

    def _keep_windows(self, key: tuple, got: tuple[np.ndarray, np.ndarray]) -> None:
        """Cache one track's decoded windows (read-only), dropping the least recently used
        beyond :data:`WINDOWS_CACHE_BYTES`. Holds ``_windows_lock``."""
        for a in got:
            a.flags.writeable = False
        size = got[0].nbytes + got[1].nbytes
        if size > WINDOWS_CACHE_BYTES // 4:
            return
        old = self._windows.pop(key, None)
        if old is not None:
            self._windows_bytes -= old[0].nbytes + old[1].nbytes
        self._windows[key] = got
        self._windows_bytes += size
        while self._windows_bytes > WINDOWS_CACHE_BYTES:
            _, (a, b) = self._windows.popitem(last=False)
            self._windows_bytes -= a.nbytes + b.nbytes

    def _decode_segments(self, tid: int, starts: bytes, vecs: bytes) -> tuple[np.ndarray, np.ndarray] | StoreError:
        segs = None if len(starts) % 4 else decode_windows(len(starts) // 4, vecs)
        if segs is None:
            return StoreError(f"{self.db_path}: the stored windows of track {tid} are damaged "
                              f"({len(starts)} bytes of starts, {len(vecs)} of vectors); scan again "
                              "with --retry-failed or touch the file to redo it")
        return segs, np.frombuffer(starts, np.float32)

    def _read_segfile(self, row: Row) -> tuple[np.ndarray, np.ndarray] | StoreError:
        p = self.root / str(row.segfile)
        try:
            with np.load(p) as z:
                return z["segments"].astype(np.float32, copy=False), z["starts"].astype(np.float32, copy=False)
        except FileNotFoundError:
            # moved into the table by a scan since the row was read
            got = self._con().execute("SELECT starts, vecs FROM segments WHERE id=?", (row.id,)).fetchone()
            if got is not None:
                return self._decode_segments(row.id, *got)
            return StoreError(f"{p}: segment file missing")
        except (OSError, ValueError, KeyError) as e:
            return StoreError(f"{p}: segment file missing or damaged ({e})")

    def migrate_segment_files(self, batch: int = 500) -> int:
        """Move the window files of a schema-2 library into the segments table (the writer
        does this at the start of a scan); returns how many moved. A damaged file stays where it
        is, its track untouched (a query then says so), and is logged."""
        if not any(self.seg_dir.glob("*/*.npz")):  # a library of schema 3 has none: no table scan
            return 0
        moved, last = 0, -1
        while True:
            cur = self._con().execute(f"SELECT {_ROW_COLS} FROM tracks WHERE segfile IS NOT NULL "
                                      "AND status='ok' AND id > ? ORDER BY id LIMIT ?", (last, batch))
            rows = [_row(r) for r in cur]
            if not rows:
                break
            last = rows[-1].id
            done, params = [], []
            for row in rows:
                got = self._read_segfile(row)
                if isinstance(got, StoreError):
                    log.warning("%s", got)
                    continue
                done.append(row)
                params.append(segment_params(row.id, *got))
            with self.transaction() as con:
                con.executemany(SEGMENTS_INSERT, params)
                con.executemany("UPDATE tracks SET segfile=NULL WHERE id=? AND segfile=?",
                                [(r.id, r.segfile) for r in done])
            self._unlink_segfiles(r.segfile for r in done)
            moved += len(done)
        if moved:
            log.info("%s: moved the windows of %d tracks from their files into the database",
                     self.db_path, moved)
        return moved

    def set_presence(self, items: Iterable[tuple[int, np.ndarray]]) -> int:
        """Replace the stored presence (5,) of ok tracks, in one transaction; returns how many
        rows changed. Vectors, segments and revs stay as they are."""
        rows = [(np.ascontiguousarray(p, dtype=np.float32).tobytes(), int(i)) for i, p in items]
        for blob, _ in rows:
            if len(blob) != 4 * N_PARTS:
                raise ValueError(f"presence must hold {N_PARTS} values")
        with self.transaction() as con:
            cur = con.executemany("UPDATE tracks SET presence=? WHERE id=? AND status='ok'", rows)
            return cur.rowcount

    def count_ok(self, model_sha: str | None) -> int:
        """How many tracks are ok (of ``model_sha`` when given): the rows the index holds once
        brought in step with the store (from the covering index ``tracks_ok``)."""
        if model_sha is None:
            return self.count("ok")
        return self._con().execute("SELECT COUNT(*) FROM tracks WHERE status='ok' AND model_sha=?",
                                   (model_sha,)).fetchone()[0]

    def ok_revs(self, model_sha: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, revs), int64 and ordered by id, of the ok tracks (of ``model_sha`` when given):
        read from the covering index ``tracks_ok``, never from the rows with their vectors."""
        if model_sha is None:
            cur = self._con().execute("SELECT id, rev FROM tracks WHERE status='ok' ORDER BY id")
        else:
            cur = self._con().execute("SELECT id, rev FROM tracks WHERE status='ok' AND model_sha=? "
                                      "ORDER BY id", (model_sha,))
        a = np.array(cur.fetchall(), np.int64).reshape(-1, 2)
        return a[:, 0].copy(), a[:, 1].copy()

    def vectors(self, ids: Iterable[int]) -> Iterator[tuple[int, int, np.ndarray]]:
        """(id, rev, (640,) float32 vector) for each given id that is ok."""
        ids = [int(i) for i in ids]
        con = self._con()
        for chunk, q in _in_chunks(ids):
            for tid, rev, blob in con.execute(
                    f"SELECT id, rev, vector FROM tracks WHERE status='ok' AND id IN ({q})", chunk):
                yield int(tid), int(rev), np.frombuffer(blob, dtype=np.float32)
