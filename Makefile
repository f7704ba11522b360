# Two commands for a newcomer: `make demo` and `make test`.
# Both create .venv on first use: the CPU build of torch, then this project.
# GPU users: see "Install" in docs/getting_started.md (TORCH=... selects another torch).
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= runs/demo
TORCH ?= torch==2.13.0

.PHONY: demo test test-all venv bench bench-peers docs docs-smoke docs-clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet $(TORCH)
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

## Train the default VAE on 4,500 real MNIST digits, draw 100 samples, evaluate it.
demo: $(STAMP)
	$(VENV)/bin/ppl-vae train --data mnist5k --out $(OUT) --overwrite
	$(VENV)/bin/ppl-vae evaluate --checkpoint $(OUT)
	@echo "figures and metrics: $(OUT)/samples.png $(OUT)/metrics.jsonl $(OUT)/summary.json"

## The test suite without the slow statistical and full-size runs.
test: $(STAMP)
	$(PYTHON) -m pytest -m "not slow" -q --durations=25

## Everything, slow tests included.
test-all: $(STAMP)
	$(PYTHON) -m pytest -q

runs/z2/checkpoint.pt: $(STAMP)
	$(VENV)/bin/ppl-vae train --data mnist5k --latent-dim 2 --out runs/z2 --overwrite

## Speed against named baselines (needs `make demo` first; trains runs/z2 for NUTS); JSON in runs/bench.
bench: $(STAMP) runs/z2/checkpoint.pt
	mkdir -p runs/bench
	$(PYTHON) benchmarks/svi_throughput.py --out runs/bench/svi.json
	$(PYTHON) benchmarks/iwae_evaluation.py --checkpoint $(OUT) --out runs/bench/iwae.json
	$(PYTHON) benchmarks/nuts_schemes.py --checkpoint runs/z2 --baseline-points 5 --out runs/bench/nuts.json

## ppl_vae against the compiled JAX peers (NumPyro SVI, BlackJAX NUTS, a jitted IWAE) in one run;
## installs the bench extra (jax, numpyro, blackjax) into .venv; needs `make demo` first.
bench-peers: $(STAMP) runs/z2/checkpoint.pt
	$(PYTHON) -m pip install --quiet -e ".[bench]"
	mkdir -p runs/bench
	$(PYTHON) benchmarks/peers_vs_ppl_vae.py --checkpoint $(OUT) --checkpoint-z2 runs/z2 --out runs/bench/peers.json

DOCS_BUILD := docs/_build
SPHINX := $(PYTHON) -m sphinx -b html -W --keep-going

## The documentation site in docs/_build/html: every tutorial executed at full size
## (about 11 minutes on 2 cores the first time; unchanged tutorials come from the cache).
docs: $(STAMP)
	$(PYTHON) docs/_ext/figures.py
	$(SPHINX) docs $(DOCS_BUILD)/html -d $(DOCS_BUILD)/doctrees
	@echo "open $(DOCS_BUILD)/html/index.html"

## The same site with the tutorials in smoke mode (seconds each), in its own folder.
docs-smoke: $(STAMP)
	$(PYTHON) docs/_ext/figures.py
	PPL_VAE_SMOKE=1 $(SPHINX) docs $(DOCS_BUILD)/smoke/html -d $(DOCS_BUILD)/smoke/doctrees
	@echo "open $(DOCS_BUILD)/smoke/html/index.html"

## Forget the built site and the executed-notebook cache (every tutorial runs again).
docs-clean:
	rm -rf $(DOCS_BUILD) docs/api docs/cli_reference.md
