#!/usr/bin/env bash
# Test a plugin example the way users get it: build its wheel, install it (not editable) into a
# virtual environment of its own beside deploy-sdk, and run its tests there. Each example's ci.sh
# calls this with the example's folder name (`make test` runs every ci.sh).
#
#   examples/plugin-ci.sh sdk-NAME [PYTEST ARGS...]
#
# Environment: PYTHON (default python3) makes the environment; PLUGIN_VENV (default .venv-NAME at the
# repository root) is where it lives, rebuilt when the root pyproject.toml, constraints.txt or this
# script changes; NO_DEPS names packages to install beside the wheel without their own requirements
# (sdk-ncnn's converter, whose torch requirement it does not need).
set -euo pipefail

NAME=$1
shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EXAMPLE=$ROOT/examples/$NAME
VENV=${PLUGIN_VENV:-$ROOT/.venv-${NAME#sdk-}}
PY=$VENV/bin/python
WHEELS=$ROOT/build/${NAME#sdk-}-wheels

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

printf '\n== building and installing the %s wheel\n' "$NAME"
# setuptools reuses a stale build/ folder, which can smuggle deleted modules into the wheel.
rm -rf "$WHEELS" "$EXAMPLE/build"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WHEELS" "$EXAMPLE"
rm -rf "$EXAMPLE/build" "$EXAMPLE"/*.egg-info
"$PY" -m pip install --quiet --constraint "$LOCK" "$WHEELS"/*.whl
# Again without dependencies: replaces an installed copy of the same version with this checkout's.
"$PY" -m pip install --quiet --force-reinstall --no-deps "$WHEELS"/*.whl
if [[ -n ${NO_DEPS:-} ]]; then
    # shellcheck disable=SC2086  # a list of package names
    "$PY" -m pip install --quiet --constraint "$LOCK" --no-deps $NO_DEPS
fi

printf '\n== %s tests\n' "$NAME"
cd "$EXAMPLE"
# pytest's own entry point, not `python -m pytest`: that would put the source tree's package on
# sys.path ahead of the installed wheel.
exec "$VENV/bin/pytest" -p no:cacheprovider tests "$@"
