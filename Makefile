# Partwise: `make run` sets everything up and opens the app; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.partwise-installed

.PHONY: setup run test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# tinysoundfont renders MIDI offline; its declared pyaudio dependency is only for live
	# playback, which Partwise never uses, and does not build without PortAudio headers.
	$(PY) -m pip install -q --no-deps 'tinysoundfont>=0.3.6'
	touch $@

run: setup
	$(VENV)/bin/partwise

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check app model trainer tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
