"""The library's store: one SQLite database (WAL) plus per-track segment files beside it.

Layout of a library folder::

    library.sqlite        tracks, tags, status, errors, track vectors, presence, file locations
    segments/XX/ID.npz    per-segment embeddings (N, 640) float32 and their start times (N,)
    index/                the search indices (see :mod:`app.index`)

Every write is atomic: a segment file is written to a temporary name and renamed, then the row
that points to it is committed. A process killed at any moment leaves either the old or the new
state of each track; tracks caught half-way stay ``pending`` and the next scan redoes them.
Each thread gets its own connection; writes are serialized by a lock.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.parts import EMBED_DIM, N_PARTS
from model.weights import atomic_write

log = logging.getLogger(__name__)

DB_NAME = "library.sqlite"
SCHEMA_VERSION = 1

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
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tracks_folder ON tracks(folder);
CREATE INDEX IF NOT EXISTS tracks_status ON tracks(status);
"""


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


_ROW_COLS = ("id, path, folder, size, mtime_ns, status, error, title, artist, album, duration, "
             "model_sha, policy, rev, presence, segfile")




class Store:
    """SQLite + segment files of one library folder. Safe to use from several threads."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.root}: cannot create the library folder ({e.strerror})") from e
        self.db_path = self.root / DB_NAME
        self.seg_dir = self.root / "segments"
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        with self._write_lock:
            con = self._con()
            try:
                con.executescript(_SCHEMA)
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{self.db_path}: not a Partwise library database ({e})") from e
            ver = self.get_meta("schema_version")
            if ver is None:
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            elif int(ver) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.db_path}: written by a newer Partwise (schema {ver} > {SCHEMA_VERSION})"
                )

    # ------------------------------------------------------------ connections
    def _con(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.db_path}: library is closed")
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None,
                                      check_same_thread=False)
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
                con.execute("PRAGMA foreign_keys=ON")
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

    def folders(self) -> list[Path]:
        rows = self._con().execute("SELECT path FROM folders ORDER BY path").fetchall()
        return [Path(r[0]) for r in rows]

    def add_folder(self, folder: Path) -> None:
        self._write("INSERT OR IGNORE INTO folders(path, added) VALUES(?, ?)", (str(folder), time.time()))

    def remove_folder(self, folder: Path) -> list[int]:
        """Forget a folder and its tracks; returns the removed track ids."""
        with self.transaction() as con:
            rows = con.execute("SELECT id, segfile FROM tracks WHERE folder=?", (str(folder),)).fetchall()
            con.execute("DELETE FROM tracks WHERE folder=?", (str(folder),))
            con.execute("DELETE FROM folders WHERE path=?", (str(folder),))
        self._unlink_segfiles(r[1] for r in rows)
        return [int(r[0]) for r in rows]

    # ------------------------------------------------------------ tracks
    def row(self, track_id: int) -> Row | None:
        r = self._con().execute(f"SELECT {_ROW_COLS} FROM tracks WHERE id=?", (int(track_id),)).fetchone()
        return Row(*r) if r else None

    def row_by_path(self, path: str | os.PathLike) -> Row | None:
        r = self._con().execute(f"SELECT {_ROW_COLS} FROM tracks WHERE path=?", (str(path),)).fetchone()
        return Row(*r) if r else None

    def rows(self, status: str | None = None) -> list[Row]:
        if status is None:
            cur = self._con().execute(f"SELECT {_ROW_COLS} FROM tracks ORDER BY id")
        else:
            cur = self._con().execute(f"SELECT {_ROW_COLS} FROM tracks WHERE status=? ORDER BY id", (status,))
        return [Row(*r) for r in cur]

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
                "status='pending', error=NULL, updated=excluded.updated",
                (str(path), str(folder), size, mtime_ns, path.stem, time.time()))
            return int(con.execute("SELECT id FROM tracks WHERE path=?", (str(path),)).fetchone()[0])

    def finish_ok(self, track_id: int, *, title: str, artist: str, album: str, duration: float,
                  model_sha: str, policy: str, vector: np.ndarray, presence: np.ndarray,
                  segments: np.ndarray, starts: np.ndarray) -> int:
        """Write the segment file atomically, then commit the row as ``ok``; returns its rev.

        vector: (640,) float32; presence: (5,) float32; segments: (N, 640); starts: (N,).
        """
        assert vector.shape == (EMBED_DIM,) and presence.shape == (N_PARTS,)
        assert segments.ndim == 2 and segments.shape[1] == EMBED_DIM and starts.shape == (len(segments),)
        rel = self.segfile_for(track_id)
        target = self.root / rel

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, segments=segments.astype(np.float32), starts=starts.astype(np.float32))

        atomic_write(target, write)
        with self.transaction() as con:
            con.execute(
                "UPDATE tracks SET status='ok', error=NULL, title=?, artist=?, album=?, duration=?, "
                "model_sha=?, policy=?, rev=rev+1, vector=?, presence=?, segfile=?, updated=? WHERE id=?",
                (title, artist, album, float(duration), model_sha, policy,
                 np.ascontiguousarray(vector, dtype=np.float32).tobytes(),
                 np.ascontiguousarray(presence, dtype=np.float32).tobytes(), rel, time.time(), track_id))
            r = con.execute("SELECT rev FROM tracks WHERE id=?", (track_id,)).fetchone()
        if r is None:
            raise StoreError(f"{self.db_path}: track {track_id} vanished while being stored")
        return int(r[0])

    def finish_failed(self, track_id: int, error: str, *, title: str = "", artist: str = "",
                      album: str = "", duration: float = 0.0) -> str | None:
        """Mark a row failed (keeping no vectors); returns the old segment file to delete."""
        with self.transaction() as con:
            old = con.execute("SELECT segfile FROM tracks WHERE id=?", (track_id,)).fetchone()
            con.execute(
                "UPDATE tracks SET status='failed', error=?, title=COALESCE(NULLIF(?, ''), title), "
                "artist=?, album=?, duration=?, vector=NULL, presence=NULL, segfile=NULL, "
                "rev=rev+1, updated=? WHERE id=?",
                (error, title, artist, album, float(duration), time.time(), track_id))
        seg = old[0] if old else None
        self._unlink_segfiles([seg])
        return seg

    def delete_tracks(self, ids: Iterable[int]) -> int:
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        segs: list[str | None] = []
        with self.transaction() as con:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                q = ",".join("?" * len(chunk))
                segs += [r[0] for r in con.execute(f"SELECT segfile FROM tracks WHERE id IN ({q})", chunk)]
                con.execute(f"DELETE FROM tracks WHERE id IN ({q})", chunk)
        self._unlink_segfiles(segs)
        return len(ids)

    def segfile_for(self, track_id: int) -> str:
        return f"segments/{track_id % 256:02x}/{track_id}.npz"

    def _unlink_segfiles(self, rels: Iterable[str | None]) -> None:
        for rel in rels:
            if rel:
                try:
                    (self.root / rel).unlink(missing_ok=True)
                except OSError as e:
                    log.warning("%s: could not delete a stale segment file (%s)", self.root / rel, e)

    def load_segments(self, row: Row) -> tuple[np.ndarray, np.ndarray]:
        """(N, 640) float32 segment embeddings and (N,) start seconds of an ok track."""
        if not row.segfile:
            raise StoreError(f"track {row.id} ({row.path}) has no stored segments")
        p = self.root / row.segfile
        try:
            with np.load(p) as z:
                return z["segments"].astype(np.float32, copy=False), z["starts"].astype(np.float32, copy=False)
        except (OSError, ValueError, KeyError) as e:
            raise StoreError(f"{p}: segment file missing or damaged ({e})") from e

    def ok_revs(self, model_sha: str | None) -> dict[int, int]:
        """id -> rev of the ok tracks (of ``model_sha`` when given)."""
        if model_sha is None:
            cur = self._con().execute("SELECT id, rev FROM tracks WHERE status='ok'")
        else:
            cur = self._con().execute("SELECT id, rev FROM tracks WHERE status='ok' AND model_sha=?",
                                      (model_sha,))
        return {int(i): int(r) for i, r in cur}

    def vectors(self, ids: Iterable[int]) -> Iterator[tuple[int, int, np.ndarray]]:
        """(id, rev, (640,) float32 vector) for each given id that is ok."""
        ids = [int(i) for i in ids]
        con = self._con()
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            q = ",".join("?" * len(chunk))
            for tid, rev, blob in con.execute(
                    f"SELECT id, rev, vector FROM tracks WHERE status='ok' AND id IN ({q})", chunk):
                yield int(tid), int(rev), np.frombuffer(blob, dtype=np.float32)
