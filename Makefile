# Partwise: `make run` sets everything up and opens the app on the demo collection; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.partwise-installed
LOCK := requirements.lock

.PHONY: setup sysdeps run test check-env lint lock clean

setup: $(STAMP)
	-@$(MAKE) -s sysdeps

# Optional system packages, installed best effort (needs root and apt-get): PortAudio for sound,
# every library Qt's X11 platform plugin links against (listed by app/ui/qtdeps.py, derived from
# the plugin in the installed PySide6 wheel), and General MIDI SoundFonts for rendering training
# data (the font sets of trainer/data/render.py). Without them Partwise still runs: playback off
# (said in the window), the window commands name what is missing and how to install it, and
# training data can be rendered with the TimGM6mb.sf2 inside pretty_midi (--font-set bundled).
SYS_PKGS := libportaudio2 fluid-soundfont-gm timgm6mb-soundfont csound-soundfont opl3-soundfont \
	fluidr3mono-gm-soundfont avldrums.lv2-soundfont
sysdeps:
	@pkgs="$(SYS_PKGS) $$($(PY) -m app.ui.qtdeps --packages)"; missing=""; \
	for p in $$pkgs; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "sysdeps: installing$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && \
	       DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null 2>&1; } \
	  || echo "sysdeps: could not install$$missing (optional)"; \
	else echo "sysdeps: optional packages missing:$$missing (install them with apt-get as root)"; fi

# Every package at the version and hash the lock gives, nothing resolved afresh (--no-deps: the
# lock holds the whole closure); then Partwise itself, editable, from this tree, its modules
# compiled as pip compiles an installed package's (a command then starts without compiling them,
# also where PYTHONDONTWRITEBYTECODE is set).
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-deps --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m compileall -q app model trainer assets bench >/dev/null
	touch $@

# make run ARGS="--weights FILE" passes options on to partwise demo
run: setup
	$(VENV)/bin/partwise demo $(ARGS)

# the tests run only in the environment the lock describes: a package at another version, or
# one the lock does not name, stops them with the difference spelled out
test: check-env
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

check-env: setup
	$(PY) .ci/lockcheck.py $(LOCK)

# Refresh requirements.lock from pyproject.toml and requirements.in (uv, from the dev extra):
# exact versions with hashes for every platform and Python >= 3.11, one version of each package
# for all of them (--fork-strategy fewest), so the lock reads the same whichever Python reads it
lock: setup
	$(VENV)/bin/uv pip compile pyproject.toml requirements.in --extra dev --universal \
	  --fork-strategy fewest --python-version 3.11 --generate-hashes --quiet \
	  --custom-compile-command "make lock" -o $(LOCK)

lint: setup
	$(VENV)/bin/ruff check app model trainer tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
