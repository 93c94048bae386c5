# Partwise: `make run` sets everything up and opens the app on the demo collection; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.partwise-installed

.PHONY: setup sysdeps run test lint clean

setup: $(STAMP)
	-@$(MAKE) -s sysdeps

# Optional system packages, installed best effort (needs root and apt-get): PortAudio for sound,
# the xcb cursor library Qt's X11 plugin needs for a window, and General MIDI SoundFonts for
# rendering training data. Without them Partwise still runs: playback off (said in the window),
# and rendering falls back to the TimGM6mb.sf2 inside pretty_midi.
SYS_PKGS := libportaudio2 libxcb-cursor0 fluid-soundfont-gm timgm6mb-soundfont csound-soundfont
sysdeps:
	@missing=""; for p in $(SYS_PKGS); do 	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; 	[ -z "$$missing" ] && exit 0; 	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then 	  echo "sysdeps: installing$$missing"; 	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null 2>&1 	  || { apt-get update -q >/dev/null 2>&1 && 	       DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null 2>&1; } 	  || echo "sysdeps: could not install$$missing (optional)"; 	else echo "sysdeps: optional packages missing:$$missing (install them with apt-get as root)"; fi

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# tinysoundfont renders MIDI offline; its declared pyaudio dependency is only for live
	# playback, which Partwise never uses, and does not build without PortAudio headers.
	$(PY) -m pip install -q --no-deps 'tinysoundfont>=0.3.6'
	touch $@

# make run ARGS="--weights FILE" passes options on to partwise demo
run: setup
	$(VENV)/bin/partwise demo $(ARGS)

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check app model trainer tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
