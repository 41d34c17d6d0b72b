"""The repository's address, written once: ``[project.urls] Repository`` in ``pyproject.toml``.

With the branch that the book's links open (``repository.branch`` in ``_config.yml``), it gives
every link the tests expect: the Colab address of a chapter and the setup cell's pip install.
``tests/test_repository.py`` checks ``_config.yml``, the README and the chapters against it.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _read(pattern: str, file: str) -> str:
    match = re.search(pattern, (ROOT / file).read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert match, f"{file}: nothing matches {pattern!r}"
    return match[1]


URL = _read(r'^Repository\s*=\s*"([^"]+)"', "pyproject.toml")  # https://github.com/<owner>/<name>
REPO = URL.removeprefix("https://github.com/")  # <owner>/<name>
BRANCH = _read(r"^repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+branch:\s*(\S+)", "_config.yml")
COLAB_PREFIX = f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/"
INSTALL_URL = f"git+{URL}@{BRANCH}"  # what a chapter's setup cell installs on Colab
