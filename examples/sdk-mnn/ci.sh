#!/usr/bin/env bash
# Test sdk-mnn the way users get it: its wheel in .venv-mnn beside deploy-sdk (examples/plugin-ci.sh).
#
#   examples/sdk-mnn/ci.sh [PYTEST ARGS...]     (from anywhere; `make test` calls it)
exec "$(dirname "${BASH_SOURCE[0]}")/../plugin-ci.sh" sdk-mnn "$@"
