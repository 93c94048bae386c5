"""``partwise gui`` (the default command): open the desktop app."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from app.clitools import setup_logging
from app.ui.qtdeps import display_problem

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    from app.library import DEFAULT_WEIGHTS
    from app.userdirs import default_library_dir

    p = argparse.ArgumentParser(prog="partwise gui", description="Open the Partwise window.")
    p.add_argument("--library", type=Path, default=None,
                   help="library folder (default: $PARTWISE_LIBRARY, else the last one used, else "
                        f"{default_library_dir()})")
    p.add_argument("--weights", type=Path, default=None,
                   help=f"model weights (default: {DEFAULT_WEIGHTS.name} shipped with Partwise)")
    p.add_argument("--folder", type=Path, action="append", default=[],
                   help="add this music folder and scan it on start (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None, remember: bool = True) -> int:
    """Open the window; with ``remember`` (not for the demo) its library and weights become the
    next start's default (:mod:`app.userdirs`)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if (problem := display_problem()) is not None:
        print(f"partwise: cannot open the window: {problem}", file=sys.stderr)
        return 1
    try:
        from PySide6.QtCore import QSettings, QTimer
        from PySide6.QtWidgets import QApplication, QMessageBox
    except ImportError as e:
        print(f"partwise: the desktop app needs PySide6 ({e}); the command line still works "
              "(partwise --help)", file=sys.stderr)
        return 1
    from app.library import Library
    from app.ui.main_window import MainWindow
    from app.userdirs import LIBRARY_KEY, WEIGHTS_KEY, in_use, to_remember

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Partwise")
    app.setOrganizationName("Partwise")
    settings = QSettings("Partwise", "Partwise")
    use = in_use(args.library, args.weights,
                 {k: settings.value(k) for k in (LIBRARY_KEY, WEIGHTS_KEY) if settings.contains(k)})
    root, weights = use.library, use.weights
    for folder in args.folder:
        if not folder.is_dir():
            print(f"partwise: {folder}: not a folder", file=sys.stderr)
            return 2
    try:
        library = Library(root, weights=weights)
    except Exception as e:  # the user sees which library and why
        QMessageBox.critical(None, "Partwise", f"Cannot open the library {root}:\n{e}")
        print(f"partwise: cannot open the library {root}: {e}", file=sys.stderr)
        return 1
    if remember:
        for k, v in to_remember(library.root, args.weights).items():
            settings.setValue(k, v)
    window = MainWindow(library, settings)
    window.show()
    # Ctrl+C or a polite kill closes the window like the user would (the scan stops cleanly);
    # the timer lets Python run signal handlers while Qt's loop is waiting.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: window.close())
    ticker = QTimer()
    ticker.timeout.connect(lambda: None)
    ticker.start(250)
    if args.folder:
        for folder in args.folder:
            library.add_folder(folder)
        window.start_scan([f.expanduser().resolve() for f in args.folder])
    try:
        return int(app.exec())
    finally:
        window.shutdown()
        library.close()
