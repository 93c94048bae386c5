"""The desktop window (PySide6 + pyqtgraph). The only package in Partwise that imports Qt.

Everything slow (scan, embed, search, maps, decoding for playback) runs in worker threads
(:mod:`app.ui.workers`) that post results back through signals and never touch widgets.
"""
