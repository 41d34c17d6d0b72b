"""The Jupyter widgets' HTML manager, served by the site itself.

A page whose notebook saved widget state (the progress bars of training, the explorer of chapter
2) gets two scripts from myst-nb: require.js and ``@jupyter-widgets/html-manager``'s
``embed-amd.js``, which draw the saved widgets. myst-nb links both from CDNs by default; this
copies them, at the versions ``package-lock.json`` pins (``npm ci`` installs them), with the
manager's icon fonts and a line of require.js configuration that tells it where it lives, into
``_build/widget_manager/widgets/`` when the HTML builder starts, adds that folder's parent to
``html_static_path`` and points myst-nb's ``nb_ipywidgets_js`` at the copies. The bundle holds
the base and control widgets of ipywidgets 7 and 8 (not the Output widget); a widget module
outside it would be fetched from a CDN, which the site tests report as a request to another host.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from avae_live import pinned_package
from sphinx.util import logging

logger = logging.getLogger(__name__)

FOLDER = "widgets"  # under _static/
REQUIRE = ("requirejs", "require.js")
MANAGER = ("@jupyter-widgets/html-manager", "dist/embed-amd.js")
FONTS = (".woff2", ".woff", ".ttf", ".eot", ".svg")  # the bundle's icon font, found beside embed-amd.js


#: Run between the two: the manager's bundle finds its icon fonts relative to its require.js
#: module address, which without this is ``<page folder>/@jupyter-widgets/html-manager/dist/``.
PATHS_JS = """\
// Written by _ext/widget_manager.py. The widget manager's module (and so its fonts) lives here.
(function () {
  var src = document.currentScript.src;
  require.config({paths: {"@jupyter-widgets/html-manager/dist": src.slice(0, src.lastIndexOf("/"))}});
})();
"""


def use_local_scripts(app, config) -> None:
    names = [Path(REQUIRE[1]).name, "paths.js", Path(MANAGER[1]).name]  # in this order on the page
    config.nb_ipywidgets_js = {f"{FOLDER}/{name}": {} for name in names}


def copy_scripts(app) -> None:
    if app.builder.format != "html":
        return
    root = Path(app.srcdir)
    static = Path(app.outdir).parent / "widget_manager"  # _build/widget_manager, beside _build/html
    out = static / FOLDER
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for package, file in (REQUIRE, MANAGER):
        shutil.copy2(pinned_package(root, package) / file, out / Path(file).name)
    dist = pinned_package(root, MANAGER[0]) / "dist"
    for font in (p for p in dist.iterdir() if p.suffix in FONTS):
        shutil.copy2(font, out / font.name)
    (out / "paths.js").write_text(PATHS_JS, encoding="utf-8")
    total = sum(p.stat().st_size for p in out.iterdir())
    logger.info(f"[widget_manager] require.js and the widgets' HTML manager in {out} ({total / 1e6:.1f} MB)")
    app.config.html_static_path.append(str(static))


def setup(app) -> dict:
    app.connect("config-inited", use_local_scripts)
    app.connect("builder-inited", copy_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
