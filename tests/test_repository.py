"""One address: every place that names the repository agrees with ``pyproject.toml``'s.

The address is ``[project.urls] Repository`` (read by ``tests/repository.py``); ``_config.yml``
(the book's repository button and Colab launch links), the README's Colab table, and each
chapter's Colab badge and setup cell are checked against it.
"""
from __future__ import annotations

import json
import re

import pytest
from repository import BRANCH, COLAB_PREFIX, INSTALL_URL, REPO, ROOT, URL

GITHUB = re.compile(r"https://github\.com/([\w.-]+/[\w.-]+)")
COLAB = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"'>]+")
INSTALL = re.compile(r"git\+https://[^\s\"']+")


def chapters() -> list[str]:
    """The chapter notebooks of ``_toc.yml`` (its pages that are not Markdown)."""
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    pages = re.findall(r"^\s*(?:-\s*)?(?:root|file):\s*['\"]?([^'\"\s#]+)", toc, flags=re.MULTILINE)
    return [p for p in pages if (ROOT / f"{p}.ipynb").exists()]


def cells(page: str) -> list[dict]:
    return json.loads((ROOT / f"{page}.ipynb").read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def test_the_address_is_a_github_repository():
    assert GITHUB.fullmatch(URL), f"pyproject.toml: Repository = {URL!r} is not https://github.com/<owner>/<name>"
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    assert urls["Repository"] == URL
    assert all(u == URL or u.startswith(f"{URL}/") for u in urls.values()), urls


def test_the_book_config_points_at_the_address():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["repository"]["url"] == URL, f"_config.yml: repository.url is {config['repository']['url']}"
    assert config["repository"]["branch"] == BRANCH


def test_the_readme_names_only_this_repository_and_opens_every_chapter():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    others = {r for r in GITHUB.findall(readme) if r.lower() != REPO.lower()}
    colab = COLAB.findall(readme)
    assert not others and all(u.startswith(COLAB_PREFIX) for u in colab), (others, colab)
    assert sorted(u.removeprefix(COLAB_PREFIX) for u in colab) == sorted(f"{p}.ipynb" for p in chapters())


@pytest.mark.parametrize("page", chapters())
def test_each_chapter_badge_and_setup_cell_use_the_address(page):
    first_markdown = next(source(c) for c in cells(page) if c["cell_type"] == "markdown")
    setup = next(source(c) for c in cells(page) if c["cell_type"] == "code")
    assert COLAB.findall(first_markdown) == [f"{COLAB_PREFIX}{page}.ipynb"], first_markdown[:400]
    assert INSTALL.findall(setup) == [INSTALL_URL], setup
