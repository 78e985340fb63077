"""MkDocs hooks (mkdocs.yml names this file): the site is the README and docs/, read as they read on
GitHub. The README is the home page, and the committed benchmark results that the pages link to are
carried into the site at their repository paths. Links are written as repository paths (so that they
work on GitHub) and rewritten here to site paths, so a link broken on GitHub is broken in the site
too, and `mkdocs build --strict` (`make docs`) fails on it."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent
HOME = "README.md"
DOCS = "docs/"
CARRIED = ("benchmarks/results",)  # repository folders the site carries as they are
LINK = re.compile(r"(\]\()([^)\s]+)(\))")  # inline links and images: [text](target)


def on_files(files, config):
    files.append(File.generated(config, "index.md", abs_src_path=str(ROOT / HOME)))
    for folder in CARRIED:
        for path in sorted((ROOT / folder).iterdir()):
            files.append(File.generated(config, f"{folder}/{path.name}", abs_src_path=str(path)))
    return files


def _repository_path(site_path: str) -> str:
    if site_path == "index.md":
        return HOME
    return site_path if site_path.startswith(CARRIED) else DOCS + site_path


def _site_path(repository_path: str) -> str:
    if repository_path == HOME:
        return "index.md"
    return repository_path.removeprefix(DOCS)


def on_page_markdown(markdown, page, config, files):
    here = page.file.src_uri
    folder = posixpath.dirname(_repository_path(here))

    def rewrite(match: re.Match) -> str:
        target = match.group(2)
        if target.startswith("#") or "://" in target or target.startswith("mailto:"):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        site = _site_path(posixpath.normpath(posixpath.join(folder, path)))
        relative = posixpath.relpath(site, posixpath.dirname(here) or ".")
        return f"{match.group(1)}{relative}{hash_}{anchor}{match.group(3)}"

    return LINK.sub(rewrite, markdown)
