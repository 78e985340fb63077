"""The markers `make test-fast` goes by: every area's module carries its marker, and the fast run
leaves out exactly the markers pyproject.toml declares."""

import re
from pathlib import Path

import pytest
from conftest import AREAS, areas

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

# A module that needs one of these at import time belongs to the area.
NEEDS = {"ray": "ray", "ray.serve": "ray", "uvicorn": "serve", "starlette": "serve", "selenium": "browser"}


def _declared() -> list[str]:
    lines = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    return [line.split(":")[0] for line in lines]


def test_every_module_that_needs_an_area_at_import_carries_its_marker():
    missing = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        needed = re.findall(r'^(?:\w+ = )?pytest\.importorskip\(\s*"([\w.]+)"', path.read_text(), re.MULTILINE)
        for module in needed:
            area = NEEDS.get(module)
            if area and area not in areas(path):
                missing.append(f"{path.name}: imports {module}, so it needs the {area!r} marker in conftest.AREAS")
    assert not missing, "\n".join(missing)


def test_the_areas_name_only_declared_markers_and_existing_modules():
    for pattern, marks in AREAS.items():
        assert list((ROOT / "tests").glob(pattern)), f"conftest.AREAS names {pattern}, which matches no module"
        assert set(marks) <= set(_declared()), marks


def test_make_test_fast_leaves_out_every_declared_marker():
    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("FAST :="))
    left_out = re.fullmatch(r"FAST := not \(([\w ]+)\)", line).group(1).split(" or ")
    assert sorted(left_out) == sorted(_declared())


@pytest.mark.slow
def test_a_marked_module_is_not_even_imported_when_its_marker_is_deselected(pytester):
    """The conftest as it is, on a module of the ray area that fails whenever it is imported."""
    pytester.makeini("[pytest]\nmarkers =\n    ray: x\n    slow: y\n")
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text().replace('"test_ray.py"', '"test_area.py"'))
    pytester.makepyfile(graphs="", test_area="raise ImportError('imported')\n", test_other="def test_ok(): pass\n")
    pytester.runpytest("-m", "not ray").assert_outcomes(passed=1)
    # A test written `slow` in that module would be selected here, so the module must be imported.
    pytester.runpytest("-m", "slow or not ray", "--continue-on-collection-errors").assert_outcomes(passed=1, errors=1)
