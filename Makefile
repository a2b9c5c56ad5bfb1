# Two commands do everything on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# Use the shared read-only datasets when they sit beside the project (no download needed).
SGT_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)
export SGT_DATA_DIR
EPOCHS ?= 2

.PHONY: install train test lint reproduce-mnist reproduce-timeseries reproduce-movies bench cifar10

install:  ## install sgt and its dev tools (torch from this machine's disk when present)
	$(PIP) install -e ".[dev]"

train: install  ## SGT on MNIST with the paper's recipe, EPOCHS epochs (2: minutes on a CPU)
	$(PYTHON) -m experiments.train trainer.max_epochs=$(EPOCHS)

test: install  ## the CPU test suite (slow and GPU tests excluded)
	$(PYTHON) -m pytest -m "not slow and not gpu" -q

lint:
	$(PYTHON) -m ruff check .

ifndef REPRO_DIR
REPRO_DIR := outputs/reproduce-mnist/$(shell date +%Y-%m-%d_%H-%M-%S)
endif
reproduce-mnist: install  ## the paper's MNIST: regular vs SGT (k=0.5), accuracy drop of 7 methods, comparison
	$(PYTHON) -m experiments.train experiment=mnist sgt.k=0 hydra.run.dir=$(REPRO_DIR)/regular
	$(PYTHON) -m experiments.train experiment=mnist sgt.k=0.5 hydra.run.dir=$(REPRO_DIR)/sgt
	$(PYTHON) -m experiments.evaluate ckpt_path=$(REPRO_DIR)/regular hydra.run.dir=$(REPRO_DIR)/eval_regular
	$(PYTHON) -m experiments.evaluate ckpt_path=$(REPRO_DIR)/sgt hydra.run.dir=$(REPRO_DIR)/eval_sgt
	$(PYTHON) -m experiments.compare $(REPRO_DIR)/regular $(REPRO_DIR)/sgt --labels regular SGT --out $(REPRO_DIR)/compare

bench: install  ## SGT step vs plain step (CPU: BENCH_ARGS="--device cpu --batch-size 32 --iters 3 --precision fp32")
	$(PYTHON) -m experiments.benchmark $(BENCH_ARGS)

cifar10: install  ## CIFAR-10 ResNet18 with its recipe (30-epoch one-cycle SGD, bf16; GPU); K=0 regular
	$(PYTHON) -m experiments.train dataset=cifar10 model=resnet18 sgt.k=$(or $(K),0.5)

reproduce-timeseries: install  ## the poster's Table 2: 4 architectures × Middle/SmallMiddle × 7 processes (GPU)
	$(PYTHON) -m experiments.timeseries_table

reproduce-movies: install  ## the poster's Table 1 for ERASER Movie Reviews, regular vs SGT
	$(PYTHON) -m experiments.eraser_table
