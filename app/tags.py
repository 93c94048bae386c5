"""Tags of an audio file (title, artist, album, duration) for the library. Samples are read by
:mod:`model.audioio`, the one audio intake."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tags:
    title: str
    artist: str
    album: str
    duration: float | None


def read_tags(path: str | os.PathLike) -> Tags:
    """Title, artist, album and duration via mutagen; the file name when there are no tags."""
    path = Path(path)
    title = artist = album = ""
    duration: float | None = None
    try:
        import mutagen

        f = mutagen.File(str(path), easy=True)
        if f is not None:
            if f.tags is not None:
                title = _first(f.tags, "title")
                artist = _first(f.tags, "artist")
                album = _first(f.tags, "album")
            length = getattr(getattr(f, "info", None), "length", None)
            if length and math.isfinite(length) and length > 0:
                duration = float(length)
    except Exception as e:  # mutagen raises many kinds of errors on damaged tags
        log.debug("%s: no readable tags (%s)", path, e)
    return Tags(title=title or path.stem, artist=artist, album=album, duration=duration)


def _first(tags, key: str) -> str:
    try:
        v = tags.get(key)
    except (KeyError, ValueError, TypeError):
        return ""
    if isinstance(v, list):
        v = v[0] if v else ""
    return str(v or "").strip()
