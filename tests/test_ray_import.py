"""The Ray path costs nothing until it is used, and says how to install Ray when it is missing.
These run without Ray installed."""

import subprocess
import sys

from sdk import cli


def test_importing_the_ray_module_imports_no_ray():
    code = (
        "import sys, sdk, sdk.scale.ray, sdk.cli; sdk.cli.build_parser(); "
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_ray_the_flag_names_the_install_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra looks like
    (tmp_path / "in").mkdir()
    code = cli.main(["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--ray"])
    assert code == 1
    assert "pip install 'deploy-sdk[cpu,ray]'" in capsys.readouterr().err


def test_the_flag_takes_an_optional_address():
    parser = cli.build_parser()
    assert parser.parse_args(["upscale", "in", "-o", "out"]).ray is None
    assert parser.parse_args(["upscale", "in", "-o", "out", "--ray"]).ray == ""
    assert parser.parse_args(["upscale", "in", "-o", "out", "--ray", "ray://head:10001"]).ray == "ray://head:10001"
