# The README's two commands: `make search` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DATA   := data/synthetic
SPACE  ?= glintru
SAMPLES ?= 6
EPOCHS ?= 5
# a CPU-sized quickstart: one GLINT-RU layer of width 64; clear it for the full space
SEARCH_ARGS ?= --set hidden_size=64 num_layers=1 batch_size=512
PYTEST_ARGS ?=

.PHONY: install data search study lint test bench clean

# torch as pinned in pyproject.toml; TORCH_INDEX picks its build, e.g. the CPU-only wheels:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_VERSION := 2.13.0
TORCH_INDEX ?=

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION) --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

$(DATA)/meta.json: | $(STAMP)
	$(BIN)/glintru synthetic --out $(DATA) --users 1000 --items 400 --avg-length 20 --seed 0 --overwrite

data: $(DATA)/meta.json

search: $(STAMP) $(DATA)/meta.json
	$(BIN)/python tune/search.py --space $(SPACE) --data $(DATA) --num-samples $(SAMPLES) \
		--max-epochs $(EPOCHS) --scheduler asha --eval-mode pop100 --cpus-per-trial 1 $(SEARCH_ARGS)

# one of the paper's studies (tune/study.py list): `make study STUDY=activations DATA=data/beauty PRESET=beauty`;
# the same command resumes an interrupted study
STUDY ?= activations
PRESET ?=
STUDY_ARGS ?=
study: $(STAMP)
	$(BIN)/python tune/study.py $(STUDY) --data $(DATA) $(if $(PRESET),--preset $(PRESET)) $(STUDY_ARGS)

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# CPU-sized: a tenth of the Beauty shape, four models, every pipeline (about 10 minutes on a
# 2-core laptop); `benchmarks/gpu.sh` runs the full shapes on one GPU.
BENCH_ARGS ?= --like beauty --scale 0.1 --models gru4rec,sasrec,linrec,glintru --threads 2

bench: $(STAMP) $(DATA)/meta.json
	$(BIN)/python benchmarks/efficiency.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/loader.py --data $(DATA) --max-length 50
	$(BIN)/python benchmarks/search_overhead.py --skip-sharing

lint: $(STAMP)
	$(BIN)/ruff check glintru tests tune analysis benchmarks
	$(BIN)/ruff format --check glintru tests tune analysis benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(DATA) results report benchmarks/results .pytest_cache
