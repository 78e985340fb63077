# Two commands set everything up from nothing: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first, by its exact pin: it is the CPU build on these machines; anything looser pulls a
# multi-GB CUDA build. torch is only needed to export and train, never to run a model.
TORCH := torch==2.13.0
EXTRAS := cpu,export,bench,video
DEV_EXTRAS := $(EXTRAS),serve,dev,ray,docs
# The plugin examples `make test` builds as wheels and tests, each in a venv of its own beside
# deploy-sdk (its ci.sh): OpenVINO, MNN and ncnn (both with Winograd convolutions).
PLUGINS := examples/sdk-openvino examples/sdk-mnn examples/sdk-ncnn

# constraints.txt pins every package that `make demo`, `make test` and the plugins' ci.sh install
# (build tools included), so every machine and CI get the same versions. Each line carries the
# marker of the Python and platform `make lock` resolved it on (CPython 3.11, Linux x86_64): elsewhere
# pip ignores the lines whose marker does not match and installs the newest releases, unpinned (the
# install says so). `make lock` refreshes it.
LOCK := constraints.txt
PINNED := --constraint $(LOCK) --build-constraint $(LOCK)
# A requirement marker that names this interpreter's Python version, OS and machine.
MARKER_OF = $(1) -c 'import platform, sys; print("python_version == \"%d.%d\" and sys_platform == \"%s\" and platform_machine == \"%s\"" % (*sys.version_info[:2], sys.platform, platform.machine()))'
LOCK_VENV := .venv-lock

.PHONY: demo test test-fast lint typecheck docs lock install install-dev clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	@grep -qF "$$($(call MARKER_OF,$(PY)))" $(LOCK) || echo "note: $(LOCK) was made for another Python or platform; installing the newest releases, unpinned"
	# pip first, alone: the pip a venv starts with may predate --build-constraint.
	$(PIP) install --quiet --upgrade --constraint $(LOCK) pip
	$(PIP) install --quiet $(PINNED) $(TORCH)
	$(PIP) install --quiet $(PINNED) -e '.[$(EXTRAS)]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet $(PINNED) -e '.[$(DEV_EXTRAS)]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(PY) -m sdk.zoo.demo --out out/demo

test: install-dev
	$(PY) -m pytest
	for plugin in $(PLUGINS); do PYTHON=$(PYTHON) $$plugin/ci.sh || exit 1; done

# The edit-test loop: the suite less what is slow or needs Ray, a server, a browser or a GPU (the
# markers in pyproject.toml), in under a minute on two cores. `make test` runs everything.
FAST := not (slow or ray or serve or browser or gpu)
test-fast: install-dev
	$(PY) -m pytest -q -m '$(FAST)'

# The checks CI runs beside the suite: ruff's lint and its formatting.
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy on the sdk core (pyproject.toml's [tool.mypy]: normal mode, strict on the public API's modules).
typecheck: install-dev
	$(VENV)/bin/mypy

# The documentation site from README.md and docs/ (mkdocs.yml): strict, so a broken link or anchor,
# or a page left out of the nav, fails it. Open build/site/index.html.
docs: install-dev
	$(VENV)/bin/mkdocs build --strict

# Rewrite constraints.txt: everything the set-up installs (torch, the dev extras, the plugins'
# dependencies), resolved afresh and unconstrained in a temporary venv, then frozen. Run `make test`
# after it: the venvs rebuild from the new lock, and tests/test_lock.py checks each install is pinned.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(LOCK_VENV)/bin/python -m pip install --quiet $(TORCH)
	# pnnx too: sdk-ncnn's ci.sh installs that converter beside it (--no-deps: without its torch).
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[$(DEV_EXTRAS)]' $(addprefix ./,$(PLUGINS)) pnnx
	# Our own distributions are left out (editable or from a path); torch's local label (+cpu) too, so
	# that the pin matches the build the Makefile installs wherever it comes from.
	marker=$$($(call MARKER_OF,$(LOCK_VENV)/bin/python)) && { \
	  echo "# Made by \`make lock\` (see the Makefile): the versions that \`make demo\`, \`make test\` and"; \
	  echo "# the plugins' ci.sh install. pip applies a line only where its marker matches."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable | grep -v ' @ ' \
	    | sed -e 's/+cpu$$//' -e "s/\$$/ ; $$marker/"; \
	} > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	# pip built the plugins in their trees: leave no build/ behind (ci.sh builds from a clean one).
	rm -rf $(LOCK_VENV) $(addsuffix /build,$(PLUGINS)) $(addsuffix /*.egg-info,$(PLUGINS))

clean:
	rm -rf $(VENV) $(LOCK_VENV) .venv-plugins .venv-mnn .venv-ncnn out build *.egg-info
