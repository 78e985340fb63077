"""constraints.txt, the lock: every distribution the set-up installs is pinned, at the version installed.

A requirement added to an extra without `make lock` would install unpinned (a constraints file only
restricts what it names): this catches it, as it catches a venv that was not made from the lock.
"""

import importlib.metadata
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"

requirements = pytest.importorskip("packaging.requirements", reason="reads requirement markers with packaging")
from packaging.utils import canonicalize_name  # noqa: E402


def _pins() -> dict[str, str]:
    """Name -> pinned version, for the lines whose marker holds on this interpreter."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = requirements.Requirement(line)
            if req.marker is None or req.marker.evaluate():
                (spec,) = req.specifier
                assert spec.operator == "==", f"{line!r}: the lock pins exact versions"
                pins[canonicalize_name(req.name)] = spec.version
    return pins


def _setup_extras() -> set[str]:
    """The extras `make test` installs, as the Makefile names them (EXTRAS and DEV_EXTRAS)."""
    makefile = (ROOT / "Makefile").read_text()
    extras = re.search(r"^EXTRAS := (.+)$", makefile, re.M).group(1)
    dev = re.search(r"^DEV_EXTRAS := (.+)$", makefile, re.M).group(1).replace("$(EXTRAS)", extras)
    return set(dev.split(","))


def test_every_distribution_the_setup_installs_is_pinned_at_its_installed_version():
    pins = _pins()
    if not pins:
        pytest.skip("constraints.txt was made for another Python or platform: here pip installed unpinned")
    try:
        importlib.metadata.distribution("deploy-sdk")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("deploy-sdk is not installed (the set-up installs it editable): nothing to compare")
    seen, todo, problems = set(), [("deploy-sdk", frozenset(_setup_extras()))], []
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} is required but not installed")
            continue
        if name != "deploy-sdk" and pins.get(name) != re.sub(r"\+.*", "", dist.version):
            problems.append(f"{name} {dist.version} installed, lock says {pins.get(name, 'nothing')}")
        for line in dist.requires or []:
            req = requirements.Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras or {""}):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    assert not problems, "run `make lock` (or rebuild the venv from the lock): " + "; ".join(sorted(problems))
    assert {"ruff", "mypy", "pytest", "torch", "onnxruntime"} <= {name for name, _ in seen}
