"""What ships with Partwise beside its code: the default model and the demo collection.

Found beside this module, so they are where the package is, whether Partwise runs from a
source tree or from an installed wheel (the weights, their card and ``demo/`` travel inside the
distribution as package data; Partwise is only ever installed on a file system). Not through
``importlib.resources``, whose import alone costs every command tens of milliseconds.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_WEIGHTS", "DEMO"]


_HERE = Path(__file__).resolve().parent


def _path(*parts: str) -> Path:
    return _HERE.joinpath(*parts)


DEFAULT_WEIGHTS: Path = _path("partwise-default.safetensors")
"""The shipped model (its JSON card sits beside it)."""

DEMO: Path = _path("demo")
"""The demo collection: rendered songs and recordings, MIDI sources, licences and credits."""
