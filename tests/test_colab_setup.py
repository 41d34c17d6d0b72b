"""The Colab start of every chapter: its first code cell, run as Colab would run it.

Each chapter notebook opens with a setup cell: on Colab (``google.colab`` importable) it installs
this package from the repository with ``pip --no-deps``, keeping Colab's own torch, torchvision and
numpy, and it picks the device. Here the cell runs in this process with a stand-in
``google.colab`` module, every way of starting an installer replaced by a recorder, and
``torch.cuda.is_available`` patched; nothing is installed and nothing touches the network.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from repository import COLAB_PREFIX, INSTALL_URL  # the address, from pyproject.toml

ROOT = Path(__file__).resolve().parents[1]
COLAB_OWN = ("torch", "torchvision", "numpy")  # Colab ships these (CUDA builds): never reinstall them


def toc_files() -> list[str]:
    """Every page of ``_toc.yml`` (``root`` and each ``file``), relative to the root, without suffix."""
    text = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    files = re.findall(r"^\s*(?:-\s*)?(?:root|file):\s*['\"]?([^'\"\s#]+)", text, flags=re.MULTILINE)
    assert files, "_toc.yml lists no pages (no 'root:' or 'file:' entries)"
    return files


def chapter_notebooks() -> list[str]:
    """Pages of ``_toc.yml`` that are not Markdown files: the chapter notebooks (they may not exist yet)."""
    return [f for f in toc_files() if not (ROOT / f"{f}.md").exists()]


def load_notebook(page: str) -> dict:
    path = ROOT / f"{page}.ipynb"
    assert path.exists(), f"_toc.yml lists {page}, but {path.relative_to(ROOT)} does not exist"
    return json.loads(path.read_text(encoding="utf-8"))


def cell_source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def setup_cell(page: str) -> str:
    """The source of the first code cell of ``page``, IPython magics turned into plain Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    code = [c for c in load_notebook(page)["cells"] if c["cell_type"] == "code"]
    assert code, f"{page}.ipynb has no code cell"
    return TransformerManager().transform_cell(cell_source(code[0]))


@dataclass
class Recorder:
    """Stands in for every way a cell can start a program; remembers each command as a list of strings."""

    calls: list[list[str]] = field(default_factory=list)

    def _record(self, args) -> list[str]:
        cmd = args.split() if isinstance(args, str) else [str(a) for a in args]
        self.calls.append(cmd)
        return cmd

    def run(self, args, *_, **__) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(self._record(args), 0, b"", b"")

    def call(self, args, *_, **__) -> int:
        self._record(args)
        return 0

    def check_output(self, args, *_, **__) -> bytes:
        self._record(args)
        return b""

    def popen(self, args, *_, **__):
        raise AssertionError(f"setup cell started a process with Popen: {self._record(args)}")

    def system(self, command: str) -> int:
        self._record(command)
        return 0

    def magic(self, name: str, line: str, *_, **__) -> None:
        self._record(f"{name} {line}")  # %pip install ... / !pip install ...

    @property
    def installs(self) -> list[list[str]]:
        return [c for c in self.calls if "pip" in " ".join(c) and "install" in c]


def run_setup_cell(
    page: str, monkeypatch, on_colab: bool, cuda: bool, output: types.ModuleType | None = None
) -> tuple[dict, Recorder]:
    """Execute ``page``'s setup cell in a fresh namespace; returns the namespace and the recorded commands.

    ``output``: a stand-in for ``google.colab.output`` (Colab's widget manager switch), on Colab.
    """
    rec = Recorder()
    monkeypatch.setattr(subprocess, "run", rec.run)
    monkeypatch.setattr(subprocess, "call", rec.call)
    monkeypatch.setattr(subprocess, "check_call", rec.call)
    monkeypatch.setattr(subprocess, "check_output", rec.check_output)
    monkeypatch.setattr(subprocess, "Popen", rec.popen)
    monkeypatch.setattr(os, "system", rec.system)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    if on_colab:
        if "google" not in sys.modules:
            google = types.ModuleType("google")
            google.__path__ = []  # a package, so that "import google.colab" finds the stand-in
            monkeypatch.setitem(sys.modules, "google", google)
        colab = types.ModuleType("google.colab")
        colab.__path__ = []  # a package: "from google.colab import output" looks in sys.modules too
        if output is not None:
            colab.output = output
            monkeypatch.setitem(sys.modules, "google.colab.output", output)
        monkeypatch.setitem(sys.modules, "google.colab", colab)
    shell = types.SimpleNamespace(run_line_magic=rec.magic, system=rec.system, getoutput=rec.system)
    namespace = {"__name__": "__main__", "get_ipython": lambda: shell}
    exec(compile(setup_cell(page), f"{page}.ipynb:setup-cell", "exec"), namespace)
    return namespace, rec


def install_targets(cmd: list[str]) -> list[str]:
    """The requirement arguments of a ``pip install`` command (what it would install)."""
    after = cmd[cmd.index("install") + 1 :]
    return [a for a in after if not a.startswith("-")]


@pytest.mark.parametrize("page", chapter_notebooks())
def test_on_colab_the_setup_cell_installs_only_this_package_and_picks_cuda(page, monkeypatch):
    ns, rec = run_setup_cell(page, monkeypatch, on_colab=True, cuda=True)
    assert len(rec.installs) == 1, f"expected one pip install on Colab, got {rec.installs} (all commands: {rec.calls})"
    cmd = rec.installs[0]
    assert install_targets(cmd) == [INSTALL_URL], f"pip would install {install_targets(cmd)}, not only {INSTALL_URL}"
    assert "--no-deps" in cmd, f"without --no-deps pip would replace Colab's torch/torchvision/numpy: {cmd}"
    for token in cmd:
        for pkg in COLAB_OWN:
            assert not re.match(rf"{pkg}([<>=!~\[;@ ]|$)", token), f"the setup cell would install {token!r}: {cmd}"
    assert ns.get("DEVICE") == "cuda", f"DEVICE is {ns.get('DEVICE')!r} with a GPU available; expected 'cuda'"


@pytest.mark.parametrize("page", chapter_notebooks())
def test_off_colab_the_setup_cell_installs_nothing_and_picks_cpu(page, monkeypatch):
    ns, rec = run_setup_cell(page, monkeypatch, on_colab=False, cuda=False)
    assert rec.installs == [], f"outside Colab the setup cell must not install anything: {rec.installs}"
    assert ns.get("DEVICE") == "cpu", f"DEVICE is {ns.get('DEVICE')!r} without a GPU; expected 'cpu'"


@pytest.mark.parametrize("page", chapter_notebooks())
def test_the_colab_badge_opens_this_notebook(page):
    markdown = "".join(cell_source(c) for c in load_notebook(page)["cells"] if c["cell_type"] == "markdown")
    links = re.findall(r"\]\((https://colab\.research\.google\.com/[^)\s]+)\)", markdown)
    links = [url for url in links if "/assets/" not in url]  # the badge image itself
    assert links, f"{page}.ipynb has no Colab badge link"
    assert set(links) == {f"{COLAB_PREFIX}{page}.ipynb"}, f"{page}.ipynb: Colab links {links} do not open this notebook"


def colab_output() -> tuple[types.ModuleType, list[str]]:
    """A stand-in ``google.colab.output`` whose ``enable_custom_widget_manager`` records its calls."""
    calls: list[str] = []
    output = types.ModuleType("google.colab.output")
    output.enable_custom_widget_manager = lambda: calls.append("enable_custom_widget_manager")
    return output, calls


def installed_ipywidgets(monkeypatch, version: str) -> None:
    """Make ``import ipywidgets`` find a stand-in of the given version."""
    monkeypatch.setitem(sys.modules, "ipywidgets", types.SimpleNamespace(__version__=version))


@pytest.mark.parametrize("page", chapter_notebooks())
@pytest.mark.parametrize(("version", "needed"), [("7.7.1", False), ("8.1.5", True), ("9.0.0", True)])
def test_on_colab_the_setup_cell_enables_the_custom_widget_manager_where_needed(page, version, needed, monkeypatch):
    """Colab's own widget manager renders ipywidgets 7 (Colab ships 7.7.1); to it the widgets of
    ipywidgets 8 are third-party widgets, which only its custom widget manager shows."""
    installed_ipywidgets(monkeypatch, version)
    output, calls = colab_output()
    run_setup_cell(page, monkeypatch, on_colab=True, cuda=True, output=output)
    expected = ["enable_custom_widget_manager"] if needed else []
    assert calls == expected, f"{page}: with ipywidgets {version} the setup cell called {calls} on Colab"


@pytest.mark.parametrize("page", chapter_notebooks())
def test_off_colab_the_setup_cell_leaves_the_widget_manager_alone(page, monkeypatch):
    output, calls = colab_output()
    monkeypatch.setitem(sys.modules, "google.colab.output", output)  # importable, but this is not Colab
    run_setup_cell(page, monkeypatch, on_colab=False, cuda=False)
    assert calls == [], f"{page}: outside Colab the setup cell called {calls}"


@pytest.mark.parametrize("page", chapter_notebooks())
def test_on_a_cpu_only_colab_the_setup_cell_says_how_to_pick_quick_mode(page, monkeypatch, capsys):
    monkeypatch.delenv("AVAE_MODE", raising=False)  # full mode, the default
    ns, _ = run_setup_cell(page, monkeypatch, on_colab=True, cuda=False, output=colab_output()[0])
    out = capsys.readouterr().out
    assert ns.get("MODE") == "full" and "AVAE_MODE" in out and "quick" in out and "GPU" in out, out
    run_setup_cell(page, monkeypatch, on_colab=True, cuda=True, output=colab_output()[0])
    assert "AVAE_MODE" not in capsys.readouterr().out, "with a GPU there is nothing to advise"


def test_ipywidgets_is_a_dependency_that_colabs_version_satisfies():
    """The explorer runs wherever the package is installed, and Colab's ipywidgets 7.7.1 will do
    (tests/test_widgets.py moves the explorer under 7.7.1)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    widgets = [Requirement(d) for d in deps if re.match(r"ipywidgets\b", d)]
    assert len(widgets) == 1, deps
    assert widgets[0].specifier.contains("7.7.1"), f"{widgets[0]} excludes Colab's ipywidgets 7.7.1"
    assert widgets[0].specifier.contains("8.1.5"), f"{widgets[0]} excludes ipywidgets 8"
