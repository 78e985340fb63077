"""Plugin discovery through real entry points: a fake distribution is installed into a temporary
site directory, exactly the way pip lays one out, and the SDK finds it by its entry points."""

import json
import textwrap

import numpy as np
import pytest

import sdk
from sdk import cli
from sdk.plugins import load_plugins

MODULES = {
    # A working backend that reuses onnxruntime under another name and a high priority.
    "fake_fast": """
        from sdk import hookimpl
        from deploy_sdk_backends.onnxruntime import OrtCpuBackend

        class FastBackend(OrtCpuBackend):
            name = "fake-fast"
            priority = 1000

        @hookimpl
        def sdk_backends():
            return FastBackend()
    """,
    # Probes fine but cannot start a session: auto must go on, a named request must fail.
    "fake_flaky": """
        from sdk import Availability, Backend, BackendUnavailableError, hookimpl

        class FlakyBackend(Backend):
            name = "fake-flaky"
            devices = ("cpu",)
            priority = 5000

            def _probe(self, device):
                return Availability.yes()

            def create_session(self, model, device, options):
                raise BackendUnavailableError("fake-flaky: the engine refused to start")

        @hookimpl
        def sdk_backends():
            return [FlakyBackend()]
    """,
    # Needs a GPU this machine lacks.
    "fake_gpu": """
        from sdk import Availability, Backend, hookimpl

        class GpuBackend(Backend):
            name = "fake-gpu"
            devices = ("cuda",)
            priority = 9000

            def _probe(self, device):
                return Availability.no("fake-gpu needs a CUDA GPU")

            def create_session(self, model, device, options):
                raise AssertionError("never called: the probe says no")

        @hookimpl
        def sdk_backends():
            return [GpuBackend()]
    """,
    # Takes one option of its own, and none of onnxruntime's.
    "fake_picky": """
        from sdk import Availability, Backend, hookimpl
        from deploy_sdk_backends.onnxruntime import OrtCpuBackend

        class PickyBackend(Backend):
            name = "fake-picky"
            devices = ("cpu",)
            priority = 50
            options = ("turbo",)

            def _probe(self, device):
                return Availability.yes()

            def create_session(self, model, device, options):
                return OrtCpuBackend().create_session(model, device, {})

        @hookimpl
        def sdk_backends():
            return [PickyBackend()]
    """,
    "fake_broken": """
        raise ImportError("fake_broken needs a library that is not installed")
    """,
    "fake_garbage": """
        from sdk import hookimpl

        @hookimpl
        def sdk_backends():
            return 42
    """,
    "fake_typo": """
        from sdk import hookimpl

        @hookimpl
        def sdk_backend():
            return []
    """,
    "fake_clash": """
        from sdk import hookimpl
        from deploy_sdk_backends.onnxruntime import OrtCpuBackend

        @hookimpl
        def sdk_backends():
            return [OrtCpuBackend()]
    """,
    "fake_probe_raises": """
        from sdk import Backend, hookimpl

        class Exploding(Backend):
            name = "fake-exploding"
            devices = ("cpu",)
            priority = 7000

            def _probe(self, device):
                raise RuntimeError("driver crashed")

            def create_session(self, model, device, options):
                raise AssertionError("never called")

        @hookimpl
        def sdk_backends():
            return [Exploding()]
    """,
}

DISTRIBUTIONS = {
    "fakeplugins": (
        "1.0",
        [
            "fast = fake_fast",
            "flaky = fake_flaky",
            "gpu = fake_gpu",
            "broken = fake_broken",
            "garbage = fake_garbage",
            "typo = fake_typo",
            "exploding = fake_probe_raises",
        ],
    ),
    "clashing-plugin": ("2.0", ["clash = fake_clash"]),
    "picky-plugin": ("0.3", ["picky = fake_picky"]),
}


@pytest.fixture
def site(tmp_path, monkeypatch, fresh_plugins):
    """Install the fake distributions into a site directory on sys.path."""
    for module, body in MODULES.items():
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    for dist, (version, entry_points) in DISTRIBUTIONS.items():
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text("[sdk.backends]\n" + "\n".join(entry_points) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for variable in ("SDK_LOAD_PLUGINS", "SDK_DISABLE_PLUGINS", "SDK_STRICT_PLUGINS"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def records():
    return {r.name: r for r in sdk.list_backends()}


def test_discovered_with_distribution_and_version(site):
    found = records()
    assert found["fake-fast"].distribution == "fakeplugins" and found["fake-fast"].version == "1.0"
    assert found["fake-fast"].available and found["fake-fast"].plugin == "fast"
    assert not found["fake-gpu"].available and "needs a CUDA GPU" in found["fake-gpu"].reason
    assert found["ort-cpu"].available and found["ort-cpu"].distribution == "deploy-sdk"


def test_broken_plugins_are_recorded_and_the_rest_work(site):
    found = records()
    assert "ImportError: fake_broken needs a library" in found["broken"].load_error
    assert "returned 42" in found["garbage"].load_error
    assert "sdk_backend" in found["typo"].load_error  # check_pending caught the misspelled hook
    assert not found["broken"].available and found["broken"].reason.startswith("plugin failed to load")


def test_a_probe_that_raises_is_contained(site):
    found = records()
    assert not found["fake-exploding"].available
    assert "RuntimeError: driver crashed" in found["fake-exploding"].reason


def test_two_backends_with_one_name_are_rejected_naming_both(site):
    clash = records()["clash"]
    assert "'ort-cpu' is provided twice" in clash.load_error
    assert "deploy-sdk" in clash.load_error and "clashing-plugin" in clash.load_error
    assert load_plugins().get("ort-cpu").distribution == "deploy-sdk"


def test_auto_takes_the_best_that_starts(site, runtime_model, caplog):
    predictor = sdk.Predictor(runtime_model)
    assert predictor.backend == "fake-fast"  # fake-flaky outranks it but cannot start; fake-gpu has no GPU
    assert "fake-flaky" in caplog.text and "refused to start" in caplog.text
    out = predictor(np.zeros((6, 6, 3), np.uint8), scale=2)
    assert out.shape == (12, 12, 3)


def test_a_named_backend_never_falls_back(site, runtime_model):
    with pytest.raises(sdk.BackendUnavailableError, match="refused to start"):
        sdk.Predictor(runtime_model, backend="fake-flaky")
    with pytest.raises(sdk.BackendUnavailableError, match="needs a CUDA GPU"):
        sdk.Predictor(runtime_model, backend="fake-gpu")
    with pytest.raises(sdk.BackendUnavailableError, match="its plugin failed to load.*ImportError"):
        sdk.Predictor(runtime_model, backend="broken")


def test_nothing_fits_lists_every_reason(site, runtime_model, monkeypatch):
    monkeypatch.setenv("SDK_LOAD_PLUGINS", "gpu,broken")
    with pytest.raises(sdk.BackendUnavailableError) as error:
        sdk.Predictor(runtime_model)
    message = str(error.value)
    assert "fake-gpu: fake-gpu needs a CUDA GPU" in message and "plugin broken" in message


def test_disable_by_plugin_or_backend_name(site, monkeypatch):
    monkeypatch.setenv("SDK_DISABLE_PLUGINS", "fast, ort-cuda")
    found = records()
    assert "fake-fast" not in found and "ort-cuda" not in found and "ort-cpu" in found


def test_load_only_the_named_plugins(site, monkeypatch):
    monkeypatch.setenv("SDK_LOAD_PLUGINS", "fast")
    assert set(records()) == {"fake-fast"}


def test_strict_mode_raises_naming_the_plugin(site, monkeypatch):
    monkeypatch.setenv("SDK_STRICT_PLUGINS", "1")
    monkeypatch.setenv("SDK_LOAD_PLUGINS", "garbage,onnxruntime")
    with pytest.raises(sdk.PluginError, match="plugin 'garbage' from fakeplugins 1.0: .*returned 42"):
        sdk.list_backends()


def test_engine_specific_options_narrow_auto(site, runtime_model, monkeypatch):
    monkeypatch.setenv("SDK_LOAD_PLUGINS", "picky,onnxruntime")
    assert sdk.Predictor(runtime_model).backend == "ort-cpu"
    assert sdk.Predictor(runtime_model, turbo=True).backend == "fake-picky"  # ort-cpu does not take it
    assert sdk.Predictor(runtime_model, intra_op_num_threads=1).backend == "ort-cpu"
    with pytest.raises(sdk.InputError, match="unknown onnxruntime option 'turbo'"):
        sdk.Predictor(runtime_model, backend="ort-cpu", turbo=True)


def test_cli_backends_json_shows_failures(site, capsys):
    assert cli.main(["backends", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["fake-fast"]["available"] is True
    assert listed["broken"]["load_error"].startswith("ImportError")
    for record in listed.values():
        assert {"name", "distribution", "version", "devices", "priority", "available", "reason"} <= set(record)


def test_cli_backends_table_shows_failures(site, capsys):
    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "fake-fast" in out and "load failed" in out


def test_builtin_backends_on_a_cpu_machine(fresh_plugins):
    found = records()
    assert found["ort-cpu"].available
    cuda = found["ort-cuda"]
    assert not cuda.available
    # The reason names what is missing: the GPU build of onnxruntime, or a GPU.
    assert "onnxruntime-gpu" in cuda.reason or "GPU" in cuda.reason


@pytest.mark.parametrize("auto", ["AUTO", "Auto", " auto "])
def test_auto_in_any_casing_is_auto(site, runtime_model, monkeypatch, caplog, auto):
    assert sdk.Predictor(runtime_model, backend=auto).backend == "fake-fast"  # falls back past fake-flaky
    assert "fake-flaky" in caplog.text
    monkeypatch.setenv("SDK_LOAD_PLUGINS", "picky,onnxruntime")
    assert sdk.Predictor(runtime_model, backend=auto, turbo=True).backend == "fake-picky"  # options narrow it
