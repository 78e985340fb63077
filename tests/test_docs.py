"""The documentation: every page of docs/ is in the site's navigation, the layout page names the tree as
it is, and the site builds with MkDocs in strict mode (no broken link or anchor). `make docs`, which
CI runs, is the same build."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
yaml = pytest.importorskip("yaml", reason="reads mkdocs.yml with PyYAML (the docs extra installs it)")


def _nav_pages(entries) -> set[str]:
    pages = set()
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages |= _nav_pages(value) if isinstance(value, list) else {value}
    return pages


def test_every_page_of_docs_is_in_the_navigation_and_every_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = _nav_pages(config["nav"])
    written = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert written - pages == set(), "add these pages to the nav of mkdocs.yml"
    assert pages - written == {"index.md"}, "the nav names pages that are gone (index.md is the README)"


def test_the_layout_page_names_every_folder_and_every_module_of_the_core():
    layout = (ROOT / "docs" / "layout.md").read_text()

    def entries(folder: str, files: str | None) -> list[str]:
        found = [f"{p.name}/" for p in (ROOT / folder).iterdir() if p.is_dir() and not p.name.startswith("__")]
        return found + ([f"{p.name}" for p in (ROOT / folder).glob(files) if p.name != "__init__.py"] if files else [])

    names = entries("sdk", "*.py") + entries("backends", "*.py") + entries("benchmarks", None)
    names += entries("examples", None) + ["__init__.py"]  # sdk's: the public API
    missing = sorted(n for n in names if n not in layout)
    assert not missing, f"docs/layout.md does not show: {missing}"


@pytest.mark.slow
def test_the_site_builds_in_strict_mode(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("MkDocs is not installed: pip install -e '.[docs]' (make install-dev installs it)")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    home = (tmp_path / "site" / "index.html").read_text()
    assert "Headline figures" in home and 'href="api/"' in home  # the README, its links made site links
