# Set-up and everyday commands. `make run` and `make test` work on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is pinned here (not in pyproject) so this machine takes the CPU build;
# users installing rlhflab with pip get torch as an ordinary dependency.
TORCH  ?= torch==2.13.0

.PHONY: run test bench install clean

$(STAMP): pyproject.toml Makefile
	@# the report test opens reports in headless Chromium: Debian's, since Playwright cannot download its own here
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,mujoco]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/rlhflab run

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) bench/control_preferences.py

clean:
	rm -rf $(VENV) runs
