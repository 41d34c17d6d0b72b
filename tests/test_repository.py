"""One address: every place that names the repository agrees with ``pyproject.toml``'s.

The address is ``[project.urls] Repository`` (read by ``tests/repository.py``); ``_config.yml``
(the book's repository button and Colab launch links), the README's Colab table, and each
chapter's Colab badge and setup cell are checked against it.

Clean cells: a chapter chooses its sizes in one place, one ``S = sizes(...)`` cell after the
setup cell, and no later cell picks a size or branches on the run mode.

One idea per chapter: no chapter runs to more than about 2,000 words of prose.
"""
from __future__ import annotations

import json
import re

import pytest
from repository import BRANCH, COLAB_PREFIX, INSTALL_URL, REPO, ROOT, URL

GITHUB = re.compile(r"https://github\.com/([\w.-]+/[\w.-]+)")
COLAB = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"'>]+")
INSTALL = re.compile(r"git\+https://[^\s\"']+")
PICK = re.compile(r"\bpick\(")  # the old per-cell choice, pick(quick=..., full=...)
MODE_TEST = re.compile(  # a comparison with the run mode: MODE ==, mode() ==, == "quick"
    r"\b(?:MODE|mode\(\))\s*[!=]=|[!=]=\s*[\"'](?:quick|full)[\"']|[\"'](?:quick|full)[\"']\s*[!=]="
)
SIZES = re.compile(r"\bsizes\(")
WORD = re.compile(r"[A-Za-z0-9][\w'’-]*")
MAX_WORDS = 2000  # prose per chapter: markdown cells, code blocks and display math left out
NOT_YET: set[str] = set()  # chapters still to be converted to one sizes() cell: none


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


def book_notebooks() -> list[str]:
    """Every notebook in ``book/``, listed in ``_toc.yml`` or not."""
    return sorted(p.name for p in (ROOT / "book").glob("*.ipynb"))


def code_cells(name: str) -> list[str]:
    """The sources of the code cells of ``book/<name>``."""
    nb = json.loads((ROOT / "book" / name).read_text(encoding="utf-8"))
    return [source(c) for c in nb["cells"] if c["cell_type"] == "code"]


def mode_choices(name: str) -> list[str]:
    """The lines of ``name``'s code cells that pick a size per mode or compare the mode."""
    return [line.strip() for cell in code_cells(name) for line in cell.splitlines()
            if PICK.search(line) or MODE_TEST.search(line)]


def test_the_mode_checks_catch_a_pick_and_a_comparison():
    for line in ('N = pick(quick=8, full=500)', 'if MODE == "full":', 'if mode() != "quick":',
                 'quick = avae.lessons.notebook.mode() == "quick"', 'if "quick" == MODE:'):
        assert PICK.search(line) or MODE_TEST.search(line), line
    for line in ("S = sizes(n=(8, 500))", "DEVICE, MODE = setup()", 'PRESET = S.preset',
                 'x_train = load_mnist("train", limit=2000)', "picks = [1, 2]"):
        assert not (PICK.search(line) or MODE_TEST.search(line)), line


@pytest.mark.parametrize("name", book_notebooks())
def test_no_cell_picks_a_size_or_branches_on_the_mode(name):
    found = mode_choices(name)
    if name in NOT_YET:
        assert found, f"{name} no longer picks per mode: remove it from NOT_YET"
        return
    assert not found, (f"{name}: choose sizes in its one `S = sizes(...)` cell and use "
                       f"`S.<name>` (a boolean size where the code differs): {found}")


@pytest.mark.parametrize("name", book_notebooks())
def test_a_chapter_chooses_its_sizes_in_one_cell_after_the_setup(name):
    cells = code_cells(name)
    where = [i for i, cell in enumerate(cells) if SIZES.search(cell)]
    if not where:
        return
    assert len(where) == 1, f"{name}: sizes() is called in code cells {where}, not in one"
    assert where[0] <= 1, f"{name}: sizes() in code cell {where[0]}, not in or after the setup cell"
    assert cells[where[0]].rstrip().splitlines()[-1] == "S", f"{name}: end the sizes cell with S"


def prose_words(nb: dict) -> int:
    """Words of prose in a notebook: its markdown cells without code blocks or $$ math."""
    text = "\n".join(source(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.DOTALL)
    return len(WORD.findall(text))


def test_prose_words_counts_words_not_code():
    nb = {"cells": [{"cell_type": "markdown", "source": "One two's three-four.\n```\nx = 1\n```\n$$a + b$$"},
                    {"cell_type": "code", "source": "print('five six')"}]}
    assert prose_words(nb) == 3


@pytest.mark.parametrize("name", book_notebooks())
def test_a_chapter_holds_one_idea(name):
    words = prose_words(json.loads((ROOT / "book" / name).read_text(encoding="utf-8")))
    assert words <= MAX_WORDS, (f"{name}: {words:,} words of prose, more than {MAX_WORDS:,}: "
                                f"split the chapter or tighten it")
