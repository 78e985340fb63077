"""Discovery as users meet it: the installed wheel is found through its entry point, listed with its
distribution and version, filtered by the SDK_* variables, and isolated from broken neighbours
(sdk-broken-plugin, installed beside it by ci.sh)."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from plugin_cli import backends_json, run_python, sdk_cli

from sdk import Predictor
from sdk.errors import BackendUnavailableError, PluginError


def test_sdk_backends_lists_openvino_with_distribution_and_version():
    records = backends_json()
    record = records["openvino"]
    assert record["distribution"] == "sdk-openvino"
    assert record["version"] == metadata.version("sdk-openvino")
    assert record["plugin"] == "openvino"
    assert record["devices"] == ["cpu"]
    assert record["priority"] == 90
    assert record["available"] is True, record["reason"]
    assert record["details"]["precision"] == "f32"
    assert record["load_error"] is None
    assert records["ort-cpu"]["available"] is True  # the built-ins are still there


def test_the_plugin_is_the_installed_wheel_not_the_source_tree():
    import sdk_openvino

    distribution = metadata.distribution("sdk-openvino")
    assert "site-packages" in sdk_openvino.__file__, sdk_openvino.__file__
    direct_url = distribution.read_text("direct_url.json")
    # pip records an editable install as {"dir_info": {"editable": true}}; a wheel has no such flag.
    assert not (direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"))


def test_loading_plugins_does_not_import_openvino():
    # Every `sdk` command and every backend="auto" loads all plugins: a heavy import there slows them all.
    code = (
        "import sys, sdk.plugins\n"
        "registry = sdk.plugins.load_plugins()\n"
        "assert 'openvino' in registry.backends, sorted(registry.backends)\n"
        "print('openvino' in sys.modules)\n"
    )
    done = run_python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_broken_plugins_are_reported_and_stop_nothing():
    records = backends_json()
    assert "ModuleNotFoundError" in records["broken-import"]["load_error"]
    assert records["broken-import"]["distribution"] == "sdk-broken-plugin"
    assert records["broken-import"]["available"] is False
    assert "sdk_backends() returned" in records["broken-garbage"]["load_error"]
    probe = records["broken-probe"]
    assert probe["available"] is False and probe["load_error"] is None
    assert "probe failed: RuntimeError: driver exploded" in probe["reason"]
    assert records["openvino"]["available"] and records["ort-cpu"]["available"]


def test_the_table_shows_broken_plugins_too():
    done = sdk_cli("backends")
    assert done.returncode == 0, done.stderr
    for name in ("openvino", "ort-cpu", "broken-import", "broken-garbage", "broken-probe"):
        assert name in done.stdout
    assert "load failed" in done.stdout


def test_disable_hides_openvino():
    records = backends_json(SDK_DISABLE_PLUGINS="openvino")
    assert "openvino" not in records
    assert records["ort-cpu"]["available"]


def test_load_limits_loading_to_the_named_plugins():
    assert set(backends_json(SDK_LOAD_PLUGINS="openvino")) == {"openvino"}
    assert set(backends_json(SDK_LOAD_PLUGINS="openvino, onnxruntime")) == {"openvino", "ort-cpu", "ort-cuda"}


def test_strict_mode_raises_on_a_broken_plugin(plugins, monkeypatch):
    monkeypatch.setenv("SDK_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        plugins.load_plugins()


def test_strict_mode_from_the_command_line():
    done = sdk_cli("backends", "--json", SDK_STRICT_PLUGINS="1")
    assert done.returncode == 1
    assert "sdk: error:" in done.stderr and "must return" in done.stderr and done.stdout == ""
    # ...and with the broken plugins left out, strict mode loads the good ones.
    records = backends_json(SDK_STRICT_PLUGINS="1", SDK_DISABLE_PLUGINS="broken-import,broken-garbage")
    assert records["openvino"]["available"]


def test_a_broken_plugin_named_explicitly_says_why(plugins, srcnn3_path):
    with pytest.raises(BackendUnavailableError, match="ModuleNotFoundError"):
        Predictor(srcnn3_path, backend="broken-import")
    with pytest.raises(BackendUnavailableError, match="probe failed"):
        Predictor(srcnn3_path, backend="broken-probe")


def test_auto_keeps_the_faster_ort_cpu_and_skips_the_broken_probe(plugins, srcnn3_path):
    # Without a measurement (tune=False; SDK_TUNE=0 in these tests) auto goes by priority: openvino's
    # (90) is below ort-cpu's (100), which runs the optimised SRCNN faster.
    with Predictor(srcnn3_path, backend="auto", device="cpu") as predictor:
        assert predictor.backend == "ort-cpu"
    with Predictor(srcnn3_path, backend="openvino", device="cpu") as predictor:
        assert predictor.backend == "openvino"


def test_auto_times_openvino_against_ort_cpu_and_takes_the_faster(plugins, srcnn3_path):
    with Predictor(srcnn3_path, backend="auto", device="cpu", tune=True) as predictor:
        ranking = predictor.ranking
        assert {"ort-cpu", "openvino"} <= {e["backend"] for e in ranking.entries}
        assert predictor.backend == ranking.chosen == ranking.entries[0]["backend"]
        assert all(e["ms"] > 0 for e in ranking.entries)
    with Predictor(srcnn3_path, backend="auto", device="cpu", tune=True) as predictor:
        assert predictor.ranking.cached and predictor.backend == ranking.chosen


def test_disabled_openvino_cannot_be_named(plugins, monkeypatch, srcnn3_path):
    monkeypatch.setenv("SDK_DISABLE_PLUGINS", "openvino")
    with pytest.raises(BackendUnavailableError, match="unknown backend 'openvino'"):
        Predictor(srcnn3_path, backend="openvino")
    with Predictor(srcnn3_path, backend="auto", device="cpu") as predictor:
        assert predictor.backend == "ort-cpu"
