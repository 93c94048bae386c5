"""Find the audio files under a folder: recursive, follows links, never loops, never raises.

Problems on the way (unreadable folders, symlink loops, broken links) are collected as
``(path, message)`` pairs and the walk goes on. File names need not be valid UTF-8: Python
carries such bytes as surrogate escapes, :func:`shown` writes them as ``\\xNN`` for people.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoundFile:
    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{shown(self.path)}: {self.message}"


def shown(text: str | os.PathLike) -> str:
    """A path (or a message holding one) as people read it: valid UTF-8 as it is, other bytes
    of a file name as ``\\xNN`` (``latin1_\\xe9t\\xe9.wav``); always encodable as UTF-8."""
    s = os.fspath(text)
    try:
        raw = s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def walk_audio(root: str | os.PathLike) -> tuple[list[FoundFile], list[Problem]]:
    """All audio files under ``root`` (sorted by path) and the problems met on the way."""
    from model.audioio import is_audio_file  # with soundfile: only a scan needs it

    root = Path(root)
    files: list[FoundFile] = []
    problems: list[Problem] = []
    try:
        st = root.stat()
    except OSError as e:
        return [], [Problem(root, f"cannot open the folder ({e.strerror or e})")]
    visited = {(st.st_dev, st.st_ino): root}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            problems.append(Problem(folder, "cannot read the folder (permission denied); skipped"))
            continue
        except OSError as e:
            problems.append(Problem(folder, f"cannot read the folder ({e.strerror or e}); skipped"))
            continue
        subdirs = []
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = not is_dir and entry.is_file(follow_symlinks=True)
            except OSError as e:
                problems.append(Problem(path, f"cannot inspect ({e.strerror or e}); skipped"))
                continue
            if is_dir:
                try:
                    dst = entry.stat(follow_symlinks=True)
                except OSError as e:
                    problems.append(Problem(path, f"cannot open ({e.strerror or e}); skipped"))
                    continue
                key = (dst.st_dev, dst.st_ino)
                if key in visited:
                    problems.append(Problem(path, f"symlink loop or repeated folder (same as "
                                                  f"{visited[key]}); skipped"))
                    continue
                visited[key] = path
                subdirs.append(path)
            elif is_file:
                if not is_audio_file(path):
                    continue
                try:
                    fst = entry.stat(follow_symlinks=True)
                except OSError as e:
                    problems.append(Problem(path, f"cannot stat ({e.strerror or e}); skipped"))
                    continue
                files.append(FoundFile(path, int(fst.st_size), int(fst.st_mtime_ns)))
            elif entry.is_symlink():
                if is_audio_file(path) or not path.suffix:
                    problems.append(Problem(path, "broken symbolic link; skipped"))
        stack.extend(reversed(subdirs))
    files.sort(key=lambda f: str(f.path))
    for p in problems:
        log.warning("%s", p)
    return files, problems
