# FedArena: `make demo` and `make test` set up .venv on first use, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED_ASSETS := $(abspath ../shared/assets)
# Point the data root at ../shared/assets when it exists and FEDARENA_DATA is unset.
ifeq ($(origin FEDARENA_DATA), undefined)
ifneq ($(wildcard $(SHARED_ASSETS)),)
export FEDARENA_DATA := $(SHARED_ASSETS)
endif
endif
export MPLBACKEND := Agg

.PHONY: demo test lint setup clean screenshot-check

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py defenses/aggregation/_closest_to_median.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: the local CPU build; the project's range then keeps it. The optional
	# extras (Ray, Flower) are installed too, so their tests run in `make test`.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,ray,flower]'
	touch $@

demo: setup
	$(PY) -m fedarena.benchmarks.demo

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

# Figures of every shipped suite (a synthetic store, no compute) and report.html: no
# overlapping labels, every table captioned, a 1400-px screenshot in headless Chromium
# (Debian's package, installed when missing) under runs/screenshot/ to look at.
# Add result folders with SCREENSHOT_DIRS="runs/quick ...".
screenshot-check: setup
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)
	$(PY) -m fedarena.benchmarks.figures.screenshot_check --synthetic --shots runs/screenshot $(SCREENSHOT_DIRS)

clean:
	rm -rf $(VENV) .pytest_cache
