# Two commands set everything up from nothing: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first, by its exact pin: it is the CPU build on these machines; anything looser pulls a
# multi-GB CUDA build. torch is only needed to export and train, never to run a model.
TORCH := torch==2.13.0

.PHONY: demo test lint install install-dev clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[cpu,export,bench,video]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -e '.[cpu,export,bench,serve,dev,ray,video]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(PY) -m sdk.zoo.demo --out out/demo

test: install-dev
	$(PY) -m pytest
	# The OpenVINO plugin, built as a wheel and installed into its own venv beside deploy-sdk.
	PYTHON=$(PYTHON) examples/sdk-openvino/ci.sh
	# MNN (Winograd convolutions), the same way, in an environment of its own.
	PYTHON=$(PYTHON) examples/sdk-mnn/ci.sh

# The checks CI runs beside the suite: ruff's lint and its formatting.
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .venv-plugins .venv-mnn out build *.egg-info
