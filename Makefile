# The two commands of the README: `make train` and `make test`. Each creates or reuses .venv, installs
# torch (TORCH_SPEC, default torch==2.13.0: the CPU build on this machine; set e.g. TORCH_SPEC=torch for a
# CUDA build and TORCH_INDEX for a custom index) and this package with its extras, then runs.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sympformer-installed

.PHONY: setup train test lint format bench flow ingredients clean
setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e ".[dev,hf]"
	touch $(STAMP)

train: setup
	$(VENV)/bin/sympformer train $(ARGS)

test: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m pytest $(ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

format: setup
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

# Issue 15's speed targets in one run (~15 min on 2 cores); ARGS="--authors DIR" times the authors'
# models beside ours from DIR, a clone of their repository.
bench: setup
	$(PY) -m benchmarks.targets $(ARGS)

flow: setup
	$(VENV)/bin/sympformer flow --problem linear,softmax,control,sphere --kappa 10,100,1000 \
		--c-log 1,3,5 --eps 0,0.2 --seeds 8 --jobs 2 --out runs/flow-study

# The ingredient study (docs/results/ingredients): YuriiFormer -> SympFormer one ingredient a row,
# on the Bible (with etd_ab2 on the best row), then the decisive rows on
# Jane Austen (needs apt-get once; see --dataset austen).
HB := symp:presymp_euler/learned+drift=identity+force=attention+damping=constant
SL := symp:presymp_euler/learned
BEST := $(HB)+mlp_step=nesterov
ETD := symp:etd_ab2/learned+drift=identity+force=attention+damping=constant+mlp_step=nesterov
CHAIN := yurii,$(BEST),$(HB),$(SL)+drift=identity+force=attention,$(SL)+drift=identity+force=potential,$(SL)+force=potential,$(SL),symp:presymp_euler
STUDY := --seeds 3 --preset compare-cpu --max-steps 1000 --train.compile false --jobs 2 \
	--reference gpt-matched --wallclock-matched true

ingredients: setup
	$(VENV)/bin/sympformer compare --runs gpt,$(CHAIN),$(ETD) --chain $(CHAIN) \
		--pairs "$(ETD) vs $(BEST)" $(STUDY) --out runs/ingredients-bible
	$(VENV)/bin/sympformer compare --runs gpt,yurii,symp:presymp_euler,$(BEST),$(SL) \
		--pairs "$(BEST) vs yurii;$(SL) vs $(BEST);symp:presymp_euler vs $(SL)" \
		--dataset austen $(STUDY) --out runs/ingredients-austen

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
