"""What ships with Partwise beside its code: the default model and the demo collection.

Found through ``importlib.resources``, so they are where the package is, whether Partwise runs
from a source tree or from an installed wheel (the weights, their card and ``demo/`` travel
inside the distribution as package data).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["DEFAULT_WEIGHTS", "DEMO"]


def _path(*parts: str) -> Path:
    # a package installed on a file system (the only way Partwise is installed) gives real paths
    return Path(str(files(__name__).joinpath(*parts)))


DEFAULT_WEIGHTS: Path = _path("partwise-default.safetensors")
"""The shipped model (its JSON card sits beside it)."""

DEMO: Path = _path("demo")
"""The demo collection: rendered songs and recordings, MIDI sources, licences and credits."""
