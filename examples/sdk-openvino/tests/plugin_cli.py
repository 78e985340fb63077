"""Running the ``sdk`` command line in a fresh process, the way users meet plugin discovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

PLUGIN_VARIABLES = ("SDK_LOAD_PLUGINS", "SDK_DISABLE_PLUGINS", "SDK_STRICT_PLUGINS")


def sdk_cli(*args: str, **variables: str) -> subprocess.CompletedProcess:
    """Run ``python -m sdk ARGS`` in a fresh process, as a user would, with the given variables."""
    env = {"COLUMNS": "250", **variables}  # rich folds the table to the terminal width; keep names whole
    return run_python("-m", "sdk", *args, **env)


def run_python(*args: str, **variables: str) -> subprocess.CompletedProcess:
    """``python ARGS`` in a fresh process. It starts in a neutral folder: ``-m`` and ``-c`` put the
    working directory first on sys.path, and from the example's folder that would import the plugin's
    source tree instead of the installed wheel under test. SDK_* plugin variables come only from
    ``variables``, never from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if k not in PLUGIN_VARIABLES}
    env.update(variables)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=120, cwd=tempfile.gettempdir()
    )


def backends_json(**variables: str) -> dict[str, dict]:
    """``sdk backends --json`` as {name: record}."""
    done = sdk_cli("backends", "--json", **variables)
    assert done.returncode == 0, done.stderr
    return {record["name"]: record for record in json.loads(done.stdout)}
