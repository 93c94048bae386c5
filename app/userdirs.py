"""Per-user places and the library and weights in use: the one module that decides them for the
command line, the window and the demo. No Qt: the window hands in what it remembered.

Order for the library: a folder given on the command line, then ``$PARTWISE_LIBRARY``, then the
one the window remembered (its settings), then the platform's data folder. Weights: given, then
remembered, then the shipped model (None).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LIBRARY_KEY = "library/path"  # the window's settings keys for what it opened last
WEIGHTS_KEY = "library/weights"


def _platform_dir(kind: str) -> Path:
    """``kind`` "data" or "cache": the platform's per-user folder for it, with partwise/ below."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "partwise"
        return base / "cache" if kind == "cache" else base
    if sys.platform == "darwin":
        lib = Path.home() / "Library"
        return lib / ("Caches" if kind == "cache" else "Application Support") / "partwise"
    env, fallback = ("XDG_CACHE_HOME", ".cache") if kind == "cache" else ("XDG_DATA_HOME", ".local/share")
    return Path(os.environ.get(env) or Path.home() / fallback) / "partwise"


def default_library_dir() -> Path:
    """Per-user library folder: $PARTWISE_LIBRARY, else the platform's data folder / partwise / library."""
    env = os.environ.get("PARTWISE_LIBRARY")
    return Path(env).expanduser() if env else _platform_dir("data") / "library"


def demo_library_dir() -> Path:
    """The demo's own library folder, beside the user's library (never the same one)."""
    return default_library_dir().parent / "demo-library"


def demo_cache_dir() -> Path:
    """Per-user cache folder for the demo audio: $XDG_CACHE_HOME/partwise/demo and the like."""
    return _platform_dir("cache") / "demo"


@dataclass(frozen=True)
class InUse:
    """The library folder to open and its weights (None: the shipped model)."""

    library: Path
    weights: Path | None


def in_use(library: Path | None = None, weights: Path | None = None,
           remembered: Mapping[str, object] | None = None) -> InUse:
    """What to open, in the order the module docstring gives."""
    remembered = remembered or {}
    if library is None:
        lib = remembered.get(LIBRARY_KEY)
        library = Path(str(lib)) if lib and "PARTWISE_LIBRARY" not in os.environ else default_library_dir()
    if weights is None and (w := remembered.get(WEIGHTS_KEY)):
        weights = Path(str(w))
    return InUse(Path(library).expanduser(), Path(weights).expanduser() if weights is not None else None)


def to_remember(opened_root: Path, weights_given: Path | None) -> dict[str, str]:
    """What the window stores as the next start's default: the library it opened, and the
    weights when they were given explicitly."""
    out = {LIBRARY_KEY: str(opened_root)}
    if weights_given is not None:
        out[WEIGHTS_KEY] = str(weights_given.expanduser().resolve())
    return out
