PYTHON ?= python

.PHONY: install test lint format bench demo

install:  ## install mangacolor with the test and lint tools
	$(PYTHON) -m pip install -e ".[dev]"

test:  ## run the test suite (CPU, a few minutes)
	$(PYTHON) -m pytest -q

lint:  ## static checks
	$(PYTHON) -m ruff check mangacolor tests benchmarks
	$(PYTHON) -m ruff format --check mangacolor tests benchmarks

format:
	$(PYTHON) -m ruff format mangacolor tests benchmarks
	$(PYTHON) -m ruff check --fix mangacolor tests benchmarks

bench:  ## speed benchmarks (print their numbers; about half an hour on a 2-core CPU)
	$(PYTHON) benchmarks/colorize_bench.py
	$(PYTHON) benchmarks/prepare_bench.py
	$(PYTHON) benchmarks/scan_bench.py
	$(PYTHON) benchmarks/train_bench.py --steps 2 --warmup 1

demo:  ## colorize the example pages with the default model
	mangacolor colorize assets/examples out/
