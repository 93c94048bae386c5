"""Worker threads. They run engine calls and post results back through signals; they never
touch a widget. Signals emitted from a worker reach GUI-thread slots as queued calls."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal

from app.library import Library

log = logging.getLogger(__name__)


def _message(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if isinstance(e, (OSError, RuntimeError, ValueError, KeyError)) else f"{type(e).__name__}: {text}"


class TaskSignals(QObject):
    item = Signal(object)  # one yielded value of a streaming task
    done = Signal(object)  # the return value (None for a streaming task)
    failed = Signal(str)  # a message for the user


class Task(QRunnable):
    """Runs ``fn(*args)`` on a pool thread. With ``stream=True`` ``fn`` returns an iterator whose
    values are posted one by one through ``signals.item``."""

    def __init__(self, fn: Callable, *args, stream: bool = False):
        super().__init__()
        self.fn, self.args, self.stream = fn, args, stream
        self.signals = TaskSignals()

    def run(self) -> None:
        try:
            if self.stream:
                it: Iterator = self.fn(*self.args)
                for value in it:
                    self._emit(self.signals.item, value)
                result = None
            else:
                result = self.fn(*self.args)
        except Exception as e:  # reported to the user, never raised into Qt
            log.warning("background task failed", exc_info=True)
            self._emit(self.signals.failed, _message(e))
        else:
            self._emit(self.signals.done, result)

    @staticmethod
    def _emit(signal, value) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the window went away while we worked: nobody to tell
            log.debug("result of a background task dropped (receiver gone)")


class Runner(QObject):
    """Starts :class:`Task` s on a pool and keeps them alive until they report back."""

    def __init__(self, pool: QThreadPool, parent: QObject | None = None):
        super().__init__(parent)
        self.pool = pool
        self._live: set[Task] = set()

    def start(self, task: Task, on_done: Callable | None = None, on_failed: Callable | None = None,
              on_item: Callable | None = None) -> Task:
        self._live.add(task)
        if on_item is not None:
            task.signals.item.connect(on_item)
        if on_done is not None:
            task.signals.done.connect(on_done)
        if on_failed is not None:
            task.signals.failed.connect(on_failed)
        task.signals.done.connect(lambda _r, t=task: self._live.discard(t))
        task.signals.failed.connect(lambda _m, t=task: self._live.discard(t))
        task.setAutoDelete(False)
        self.pool.start(task)
        return task

    @property
    def busy(self) -> bool:
        return bool(self._live)


class DaemonRunner(Runner):
    """Runs tasks one after another on a daemon thread of its own.

    For work that cannot be interrupted (a UMAP fit) and touches no library state: closing
    the window never waits for it, and the process can exit while it runs.
    """

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(QThreadPool.globalInstance(), parent)
        self.name = name
        self._queue: queue.SimpleQueue[Task] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self, task: Task, on_done: Callable | None = None, on_failed: Callable | None = None,
              on_item: Callable | None = None) -> Task:
        for signal, slot in ((task.signals.item, on_item), (task.signals.done, on_done),
                             (task.signals.failed, on_failed)):
            if slot is not None:
                signal.connect(slot)
        self._live.add(task)
        task.signals.done.connect(lambda _r, t=task: self._live.discard(t))
        task.signals.failed.connect(lambda _m, t=task: self._live.discard(t))
        self._queue.put(task)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        return task

    def _loop(self) -> None:
        while True:
            self._queue.get().run()


class LatestOnly(QObject):
    """One job at a time; a request made while one runs waits, replacing any waiting one.

    Emits ``done(tag, result)`` for every job that ran, in order, so a fader dragged faster than
    searches finish still shows intermediate results and ends on the latest focus.
    """

    done = Signal(object, object)
    failed = Signal(object, str)

    def __init__(self, runner: Runner, parent: QObject | None = None):
        super().__init__(parent)
        self.runner = runner
        self._running = False
        self._pending: tuple | None = None

    def request(self, tag: object, fn: Callable, *args) -> None:
        if self._running:
            self._pending = (tag, fn, args)
        else:
            self._launch(tag, fn, args)

    @property
    def busy(self) -> bool:
        return self._running or self._pending is not None

    def _launch(self, tag: object, fn: Callable, args: tuple) -> None:
        self._running = True
        self.runner.start(Task(fn, *args), on_done=lambda r: self._finish(tag, r, None),
                          on_failed=lambda m: self._finish(tag, None, m))

    def _finish(self, tag: object, result: object, error: str | None) -> None:
        self._running = False
        nxt, self._pending = self._pending, None
        if nxt is not None:
            self._launch(*nxt)
        if error is None:
            self.done.emit(tag, result)
        else:
            self.failed.emit(tag, error)


class ScanThread(QThread):
    """Runs :meth:`Library.scan` with a cancel event; ``progress(ScanProgress)``,
    ``failed(str)``; Qt's ``finished`` when it stops for any reason."""

    progress = Signal(object)
    failed = Signal(str)

    def __init__(self, library: Library, folders: Sequence[Path] | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.library = library
        self.folders = list(folders) if folders is not None else None
        self.cancel_event = threading.Event()
        self.last = None  # the latest ScanProgress
        self.error: str | None = None  # why the scan stopped, when it failed

    def cancel(self) -> None:
        self.cancel_event.set()

    def run(self) -> None:
        try:
            for p in self.library.scan(self.folders, cancel=self.cancel_event):
                self.last = p
                self.progress.emit(p)
        except Exception as e:  # shown in the status bar; the library keeps what was stored
            log.warning("scan failed", exc_info=True)
            self.error = _message(e)
            self.failed.emit(self.error)
