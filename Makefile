# Set-up and everyday commands. `make run` and `make test` work on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is pinned here (not in pyproject) so this machine takes the CPU build;
# users installing rlhflab with pip get torch as an ordinary dependency.
TORCH  ?= torch==2.13.0

.PHONY: run test check bench install clean

$(STAMP): pyproject.toml Makefile
	@# system packages: Chromium for the browser tests, OSMesa for offscreen MuJoCo clips,
	@# PostgreSQL (server binaries) for the store tests that start a throwaway server
	@if [ ! -x /usr/bin/chromium ] || ! ldconfig -p | grep -q libOSMesa || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium libosmesa6 postgresql >/dev/null; \
		else echo "note: install Debian's chromium, libosmesa6 and postgresql for the browser, MuJoCo-clip and PostgreSQL-store tests"; fi; \
	fi
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,mujoco,web,text,postgres,ray]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/rlhflab run

# the checks CI runs before the tests: format, lint (rules in pyproject.toml), types (mypy)
check: $(STAMP)
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m mypy

test: check
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) bench/control_preferences.py

clean:
	rm -rf $(VENV) runs
