# Two commands do everything on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# Use the shared read-only datasets when they sit beside the project (no download needed).
SGT_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)
export SGT_DATA_DIR
EPOCHS ?= 2

.PHONY: install train test lint

install:  ## install sgt and its dev tools (torch from this machine's disk when present)
	$(PIP) install -e ".[dev]"

train: install  ## SGT on MNIST with the paper's settings (EPOCHS=2 by default on CPU)
	$(PYTHON) -m experiments.train trainer.max_epochs=$(EPOCHS)

test: install  ## the CPU test suite (slow and GPU tests excluded)
	$(PYTHON) -m pytest -m "not slow and not gpu" -q

lint:
	$(PYTHON) -m ruff check .
