#!/usr/bin/env bash
# Test sdk-ncnn the way users get it: its wheel in .venv-ncnn beside deploy-sdk (examples/plugin-ci.sh),
# with pnnx, ncnn's converter, installed without its torch requirement (see the README).
#
#   examples/sdk-ncnn/ci.sh [PYTEST ARGS...]     (from anywhere; `make test` calls it)
NO_DEPS=pnnx exec "$(dirname "${BASH_SOURCE[0]}")/../plugin-ci.sh" sdk-ncnn "$@"
