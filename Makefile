# Two commands do all the set-up on a fresh machine (Python 3.11+ with venv):
#   make demo   create .venv, install, generate sample dumps and run the whole pipeline on them (offline)
#   make test   create .venv, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
export REC_PIPELINE_DATA_DIR ?= $(CURDIR)/data
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install system-deps demo lint test ui bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/rec-pipeline demo

# Debian's Chromium, for the web-UI screenshot test: installed here, in the set-up, never by the tests themselves
# (they skip with a reason when it is missing). Needs root and apt-get; elsewhere it only says what is missing.
system-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser test ..."; \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1)) || \
	    echo "could not install chromium: the browser test will be skipped"; \
	  else echo "chromium not installed (needs root and apt-get): the browser test will be skipped"; fi; \
	fi

# House rules, checked before the tests (configured in pyproject.toml): lint, formatting, types.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: install system-deps lint
	$(PY) -m pytest

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

bench: install
	$(PY) bench/ingest.py
	$(PY) bench/text.py
	$(PY) bench/images.py
	$(PY) bench/quality.py
	$(PY) bench/incremental.py

clean:
	rm -rf $(VENV) data dagster_home .pytest_cache
