# Every target bootstraps what it needs: a fresh machine needs only python3 (>= 3.10) and make.
#   make book   build the book into _build/html
#   make test   everything CI runs: unit tests, notebooks (nbval), grading, the book, a browser
# Installs are remembered in .venv/.installed-* stamps and redone only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
JOBS   ?= 2
PYTEST := $(PY) -m pytest -n $(JOBS) --dist loadfile --durations=25
NBVAL  := --nbval --nbval-current-env --nbval-cell-timeout=600 --nbval-sanitize-with tests/nbval_sanitize.cfg
NOTEBOOK_DIRS := chapters solutions
# Float kernels differ between CPUs; tools/cpu_setting.py makes this machine run the kernels of a
# CPU without AVX-512 (avx2) or without AVX (default), so that a page whose claims or compared
# outputs hang on this CPU's digits fails here and not on a reader's machine.
CPU_SETTING := $(PY) tools/cpu_setting.py

.PHONY: book test test-portable fast notebooks exercises stamp bench grade lint system-deps clean help
.DEFAULT_GOAL := help

help:
	@echo "make book       build the book into _build/html"
	@echo "make test       run everything CI runs (installs what is missing first); the notebooks"
	@echo "                run twice: natively and under a baseline CPU's kernels (tools/cpu_setting.py)"
	@echo "make test-portable  the notebooks under each CPU setting: native, avx2, default"
	@echo "make fast       unit tests without the slow ones, notebooks or the browser"
	@echo "make notebooks  re-execute chapters/ and solutions/ and store their outputs"
	@echo "make exercises  regenerate exercises/ from solutions/"
	@echo "make stamp      rewrite every notebook's Colab badge and install cell from _config.yml"
	@echo "make bench      the model and training benchmarks"
	@echo "make grade      grade notebooks: make grade EXERCISE=01_patches SUBMISSIONS=dir OUT=grades"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-book: pyproject.toml | $(PY)
	$(PY) -m pip install -e ".[book]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -e ".[dev,book]"
	touch $@ $(VENV)/.installed-book

system-deps:
	@bash tools/install-system-deps.sh

book: $(VENV)/.installed-book
	$(VENV)/bin/jupyter-book build . --path-output . -W --keep-going
	@echo
	@echo "The book is at $(CURDIR)/_build/html/index.html"

test: $(VENV)/.installed-dev system-deps
	$(VENV)/bin/jupyter-book build . --path-output . -W --keep-going
	VITCOURSE_REQUIRE_BOOK=1 $(PYTEST) tests $(NOTEBOOK_DIRS) $(NBVAL)
	$(CPU_SETTING) default -- $(PYTEST) $(NOTEBOOK_DIRS) $(NBVAL)

test-portable: $(VENV)/.installed-dev
	for setting in native avx2 default; do \
		$(CPU_SETTING) $$setting -- $(PYTEST) $(NOTEBOOK_DIRS) $(NBVAL) || exit 1; \
	done

fast: $(VENV)/.installed-dev
	$(PY) -m pytest -n $(JOBS) -m "not slow and not book and not browser" tests

notebooks: $(VENV)/.installed-dev
	$(PY) tools/execute_notebooks.py $(NOTEBOOK_DIRS)

exercises: $(VENV)/.installed-dev
	$(VENV)/bin/vitcourse release

stamp: $(VENV)/.installed-dev
	$(VENV)/bin/vitcourse stamp

bench: $(VENV)/.installed-dev
	$(VENV)/bin/vitcourse bench model
	$(VENV)/bin/vitcourse bench train

grade: $(VENV)/.installed-dev
	$(VENV)/bin/vitcourse grade --exercise $(EXERCISE) $(SUBMISSIONS) --out $(or $(OUT),grades) --jobs $(JOBS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check vitcourse tests tools

clean:
	rm -rf _build
