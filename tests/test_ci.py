"""``.ci/system-packages``: what CI asks apt-get for on three kinds of Debian machine.

The script runs under bash with a PATH of stub programs (the tools a machine has) and
``AVAE_CI_DRY_RUN=1``, so it prints the apt-get command instead of running it.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "system-packages"
BASH = shutil.which("bash") or "/bin/bash"
EVERYTHING = ("chromium", "chromedriver", "make", "node", "npm", "python3")


def apt_packages(tmp_path: Path, tools: tuple[str, ...]) -> tuple[list[str] | None, str]:
    """The packages the script would install on a machine with only ``tools`` (``None``: no apt-get)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        stub = bin_dir / tool
        stub.write_text("#!/bin/sh\nexit 0\n")  # python3 -c "import ensurepip, venv" succeeds too
        stub.chmod(0o755)
    env = {"PATH": str(bin_dir), "AVAE_CI_DRY_RUN": "1"}
    proc = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installs = [line for line in proc.stdout.splitlines() if line.startswith("[ci] dry run:") and " install " in line]
    if not installs:
        return None, proc.stdout
    assert len(installs) == 1, proc.stdout
    words = installs[0].split()
    return [w for w in words[words.index("install") + 1 :] if not w.startswith("-")], proc.stdout


def test_a_bare_debian_gets_every_tool(tmp_path):
    packages, out = apt_packages(tmp_path, ())
    assert packages == ["chromium", "chromium-driver", "make", "python3", "python3-venv", "nodejs", "npm"], out
    assert "[ci] missing npm" in out and "[ci] missing chromedriver" in out


def test_nodesource_node_gets_the_browser_but_never_debians_npm(tmp_path):
    """NodeSource's nodejs bundles npm and conflicts with Debian's npm package."""
    packages, out = apt_packages(tmp_path, ("node", "npm", "make", "python3"))
    assert packages == ["chromium", "chromium-driver"], out
    assert f"[ci] found npm: {tmp_path / 'bin' / 'npm'}" in out


def test_a_machine_with_everything_installs_nothing(tmp_path):
    packages, out = apt_packages(tmp_path, EVERYTHING)
    assert packages is None, out
    assert "[ci] nothing to install" in out and "apt-get" not in out


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        (("chromium", "make", "node", "npm", "python3"), ["chromium-driver"]),
        (("chromium-browser", "chromedriver", "make", "node", "npm", "python3"), None),
        (("chromium", "chromedriver", "node", "npm", "python3"), ["make"]),
        (("chromium", "chromedriver", "make", "node", "python3"), ["npm"]),  # Debian's nodejs, npm not yet
    ],
)
def test_each_tool_is_installed_on_its_own(tmp_path, tools, expected):
    assert apt_packages(tmp_path, tools)[0] == expected


def test_ci_run_installs_through_the_script():
    assert "bash .ci/system-packages" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
