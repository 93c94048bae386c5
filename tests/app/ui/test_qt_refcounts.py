"""The Qt binding keeps Python's reference counts: emitting a signal, and Qt calling a Python
slot, leave the counts of True, False and None where they were.

PySide6 6.12.0 released one reference to True on every ``emit()`` from Python, and Qt's calls
of Python slots released references to None: the window, which emits on every fader move and
runs a 250 ms ticker, died with "bool_dealloc" or "none_dealloc" after a few minutes of use
(the UI benchmark found it). The lock pins a release without the fault; this test stops one
that has it. It runs in a child process, since a binding with the fault may crash it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import json, sys
    from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

    app = QCoreApplication([])

    class Emitter(QObject):
        plain = Signal()
        value = Signal(object)

    counts = lambda: [sys.getrefcount(x) for x in (True, False, None)]
    e, got = Emitter(), [0]
    e.plain.connect(lambda: None)
    e.value.connect(lambda v: got.__setitem__(0, got[0] + 1))
    before = counts()
    for _ in range(ROUNDS):
        e.plain.emit()
        e.value.emit(None)
    emitted = [a - b for a, b in zip(counts(), before)]
    assert got[0] == ROUNDS
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(lambda: None)
    before = counts()
    for _ in range(ROUNDS):
        timer.start(0)
        app.processEvents()
    called = [a - b for a, b in zip(counts(), before)]
    print(json.dumps({"emit": emitted, "slot": called}))
""").replace("ROUNDS", "500")


def test_signals_and_slots_keep_the_counts_of_true_false_and_none():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, f"the probe crashed ({out.returncode}): {out.stderr[-800:]}"
    deltas = json.loads(out.stdout.strip().splitlines()[-1])
    # 500 emits and 500 slot calls: a leak of one reference each would show as 500
    for what, (d_true, d_false, d_none) in deltas.items():
        assert abs(d_true) < 20 and abs(d_false) < 20 and abs(d_none) < 20, (what, deltas)
