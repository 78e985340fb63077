#!/usr/bin/env bash
# Test sdk-ncnn the way users get it: build its wheel, install it (not editable) into a virtual
# environment of its own beside deploy-sdk, and run its tests there.
#
#   examples/sdk-ncnn/ci.sh [PYTEST ARGS...]     (from anywhere; `make test` calls it)
#
# Environment: PYTHON (default python3) makes the environment; NCNN_VENV (default .venv-ncnn at the
# repository root) is where it lives, rebuilt when the root pyproject.toml, constraints.txt or this
# script changes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
EXAMPLE=$ROOT/examples/sdk-ncnn
VENV=${NCNN_VENV:-$ROOT/.venv-ncnn}
PY=$VENV/bin/python
WHEELS=$ROOT/build/ncnn-wheels

# The repository's lock (see the Makefile): the same versions as `make test`, where its markers match.
LOCK=$ROOT/constraints.txt

stamp=$(cat "$ROOT/pyproject.toml" "$LOCK" "$0" | sha256sum | cut -d' ' -f1)
if [[ ! -x $PY || $(cat "$VENV/.stamp" 2>/dev/null) != "$stamp" ]]; then
    printf '\n== creating %s with deploy-sdk[cpu]\n' "$VENV"
    rm -rf "$VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
    echo '*' > "$VENV/.gitignore"
    "$PY" -m pip install --quiet --upgrade --constraint "$LOCK" pip "setuptools>=77" wheel
    "$PY" -m pip install --quiet --constraint "$LOCK" --build-constraint "$LOCK" -e "$ROOT[cpu]" "pytest>=8"
    echo "$stamp" > "$VENV/.stamp"
fi

printf '\n== building and installing the sdk-ncnn wheel\n'
rm -rf "$WHEELS" "$EXAMPLE/build"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WHEELS" "$EXAMPLE"
rm -rf "$EXAMPLE/build" "$EXAMPLE"/*.egg-info
"$PY" -m pip install --quiet --constraint "$LOCK" "$WHEELS"/*.whl
"$PY" -m pip install --quiet --force-reinstall --no-deps "$WHEELS"/*.whl
# The converter without its torch requirement (torch serves only its PyTorch path; see the README).
"$PY" -m pip install --quiet --constraint "$LOCK" --no-deps pnnx

printf '\n== sdk-ncnn tests\n'
cd "$EXAMPLE"
exec "$VENV/bin/pytest" -p no:cacheprovider tests "$@"
