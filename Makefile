# Partwise: `make run` sets everything up and opens the app on the demo collection; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.partwise-installed

.PHONY: setup run test lint clean fonts

setup: $(STAMP)
	-@$(MAKE) -s fonts

# General MIDI SoundFonts for rendering training data (best effort: needs root and apt-get;
# without them the trainer falls back to the TimGM6mb.sf2 inside pretty_midi).
SF2_PKGS := fluid-soundfont-gm timgm6mb-soundfont csound-soundfont
fonts:
	@if [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] && [ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] \
	    && [ -f /usr/share/sounds/sf2/sf_GMbank.sf2 ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SF2_PKGS) >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && \
	       DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SF2_PKGS) >/dev/null 2>&1; } \
	  || echo "fonts: could not install $(SF2_PKGS); rendering uses pretty_midi's TimGM6mb.sf2"; \
	else echo "fonts: not root or no apt-get; install $(SF2_PKGS) for more SoundFonts"; fi

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
