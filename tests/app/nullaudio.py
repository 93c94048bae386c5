"""Route PortAudio to ALSA's null device for tests, so playback runs without a sound card.

Must run before ``sounddevice`` is first imported (app.playback imports it lazily). Where ALSA's
configuration is not where Debian puts it, nothing changes and the tests see whatever the
machine has: a device, or the "playback off" state.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ALSA_CONF = Path("/usr/share/alsa/alsa.conf")


def use_null_audio() -> None:
    if "sounddevice" in sys.modules or "ALSA_CONFIG_PATH" in os.environ or not ALSA_CONF.is_file():
        return
    conf = Path(tempfile.mkdtemp(prefix="partwise-alsa-")) / "null.conf"
    conf.write_text("pcm.!default { type null }\n")
    os.environ["ALSA_CONFIG_PATH"] = f"{ALSA_CONF}:{conf}"
