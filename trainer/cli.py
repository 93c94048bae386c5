"""``partwise-train``: data building, training, evaluation and export."""

from __future__ import annotations

from collections.abc import Sequence

from trainer.clitools import dispatch

COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("trainer.fit", "train: individual networks, pre-training, CSN (presets paper|cpu|smoke)"),
    "export": ("trainer.export", "write a run's best model as a weights file"),
    "calibrate": ("trainer.calibrate", "fit each part's presence bias on real-music validation data"),
    "eval": ("trainer.evaluate.cli", "the paper's tables on a Slakh-layout dataset"),
    "data": ("trainer.data.cli", "build a Slakh-layout dataset (synth | render-midi)"),
    "demo-audio": ("trainer.demo_audio", "render the demo collection's songs to the audio Partwise ships"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("partwise-train", __doc__.replace("`", "").strip(), COMMANDS, argv)
