"""What the ``partwise-train`` commands share: timestamped log lines on standard error, and
command arguments fit for a model card."""

from __future__ import annotations

import logging
from pathlib import Path


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def portable_args(argv: list[str]) -> list[str]:
    """A command's arguments with every absolute path (``/a/b/w.safetensors`` or
    ``--key=/a/b/w``) cut to its file name: a model card names the files a run used, never the
    folders of the machine that trained it."""
    def cut(v: str) -> str:
        return Path(v).name if Path(v).is_absolute() else v

    out = []
    for a in argv:
        key, eq, value = a.partition("=")
        out.append(f"{key}={cut(value)}" if eq and key.startswith("--") else cut(a))
    return out
