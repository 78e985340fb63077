#!/usr/bin/env bash
# Test sdk-openvino the way users get it: build its wheel, install it (not editable) into a virtual
# environment of its own beside deploy-sdk and the deliberately broken plugin, and run its tests there.
#
#   examples/sdk-openvino/ci.sh [PYTEST ARGS...]     (from anywhere; `make test` calls it)
#
# Environment: PYTHON (default python3) makes the environment; PLUGIN_VENV (default .venv-plugins at
# the repository root) is where it lives. deploy-sdk is installed editable, so core changes need no
# reinstall; the environment is rebuilt when the root pyproject.toml or constraints.txt changes. Needs PyPI
# the first time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
EXAMPLE=$ROOT/examples/sdk-openvino
BROKEN=$ROOT/examples/sdk-broken-plugin
VENV=${PLUGIN_VENV:-$ROOT/.venv-plugins}
PY=$VENV/bin/python
WHEELS=$ROOT/build/plugin-wheels

say() { printf '\n== %s\n' "$*"; }

# The repository's lock (see the Makefile): the same versions as `make test`, where its markers match.
LOCK=$ROOT/constraints.txt

stamp=$(cat "$ROOT/pyproject.toml" "$LOCK" "$0" | sha256sum | cut -d' ' -f1)
if [[ ! -x $PY || $(cat "$VENV/.stamp" 2>/dev/null) != "$stamp" ]]; then
    say "creating $VENV with deploy-sdk[cpu]"
    rm -rf "$VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
    echo '*' > "$VENV/.gitignore"  # git ignores the environment wherever it is put
    "$PY" -m pip install --quiet --upgrade --constraint "$LOCK" pip "setuptools>=77" wheel
    "$PY" -m pip install --quiet --constraint "$LOCK" --build-constraint "$LOCK" -e "$ROOT[cpu]" "pytest>=8"
    echo "$stamp" > "$VENV/.stamp"
fi

say "building the plugin wheels"
# setuptools reuses a stale build/ folder, which can smuggle deleted modules into the wheel.
rm -rf "$WHEELS" "$EXAMPLE/build" "$BROKEN/build"
# No build isolation: the environment already has setuptools, so building needs no network.
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WHEELS" "$EXAMPLE" "$BROKEN"
rm -rf "$EXAMPLE/build" "$BROKEN/build" "$EXAMPLE"/*.egg-info "$BROKEN"/*.egg-info

say "installing $(cd "$WHEELS" && echo *.whl)"
# First pass pulls in dependencies (openvino); the second replaces an installed copy of the same
# version, so the tests always see this checkout's code.
"$PY" -m pip install --quiet --constraint "$LOCK" "$WHEELS"/*.whl
"$PY" -m pip install --quiet --force-reinstall --no-deps "$WHEELS"/*.whl

say "sdk backends, as a user sees it with both plugins installed"
(cd /tmp && COLUMNS=160 "$PY" -m sdk backends) || true

say "sdk-openvino tests"
# pytest's own entry point, not `python -m pytest`: that would put the source tree's sdk_openvino on
# sys.path ahead of the installed wheel.
cd "$EXAMPLE"
exec "$VENV/bin/pytest" -p no:cacheprovider tests "$@"
