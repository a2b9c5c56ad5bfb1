# Two commands do everything on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# Use the shared read-only datasets when they sit beside the project (no download needed).
SGT_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)
export SGT_DATA_DIR
EPOCHS ?= 2

.PHONY: install train test lint reproduce-mnist reproduce-timeseries reproduce-movies bench cifar10

install:  ## install sgt, its dev tools and the hf/timm extras (torch from this machine's disk when present)
	$(PIP) install -e ".[dev,hf,timm]"

train: install  ## SGT on MNIST with the paper's recipe, EPOCHS epochs (2: minutes on a CPU)
	$(PYTHON) -m experiments.train trainer.max_epochs=$(EPOCHS)

test: install  ## the CPU test suite (slow and GPU tests excluded), two test files at a time
	$(PYTHON) -m pytest -m "not slow and not gpu" -q -n 2 --dist loadfile

lint:
	$(PYTHON) -m ruff check .

# The paper's grids are Hydra sweeps (configs/grid/): LAUNCHER=local_parallel (CPU jobs side
# by side), gpu_per_job (one job per GPU; add ARGS=trainer=gpu_per_job) or slurm_gpu; the
# same command continues an interrupted grid. REPRO_DIR is the sweep folder.
LAUNCHER ?=
ARGS ?=
ifndef REPRO_DIR
REPRO_DIR = outputs/$(1)/$(shell date +%Y-%m-%d_%H-%M-%S)
endif
SWEEP = $(PYTHON) -m experiments.train -m grid=$(1) $(if $(LAUNCHER),hydra/launcher=$(LAUNCHER)) hydra.sweep.dir=$(2) $(ARGS)

reproduce-mnist: install  ## the paper's MNIST: regular vs SGT (k=0.5), accuracy drop of 7 methods, comparison
	$(eval DIR := $(call REPRO_DIR,mnist_comparison))
	$(call SWEEP,mnist_comparison,$(DIR))
	$(PYTHON) -m experiments.report $(DIR) --view mnist --labels regular SGT

bench: install  ## the speed suite within BUDGET seconds into outputs/benchmark/<time> (CPU: BENCH_ARGS="--device cpu")
	$(PYTHON) -m experiments.benchmark suite --budget $(or $(BUDGET),600) $(BENCH_ARGS)

cifar10: install  ## CIFAR-10 ResNet18 with its recipe (30-epoch one-cycle SGD, bf16; GPU); K=0 regular
	$(PYTHON) -m experiments.train dataset=cifar10 model=resnet18 sgt.k=$(or $(K),0.5)

reproduce-timeseries: install  ## the poster's Table 2: 4 architectures × Middle/SmallMiddle × 7 processes (GPU)
	$(eval DIR := $(call REPRO_DIR,timeseries_table2))
	$(call SWEEP,timeseries_table2,$(DIR))
	$(PYTHON) -m experiments.report $(DIR) --view table2

reproduce-movies: install  ## the poster's Table 1 for ERASER Movie Reviews, regular vs SGT
	$(eval DIR := $(call REPRO_DIR,eraser_table1))
	$(call SWEEP,eraser_table1,$(DIR))
	$(PYTHON) -m experiments.report $(DIR) --view table1
