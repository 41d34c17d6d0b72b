"""Write each inline ``<script>`` of a page once.

Sphinx 7.4 adds an inline script that an extension registers after the HTML builder started
(sphinx-thebe's ``const THEBE_JS_URL = ...``) twice, once under the file name ``None`` and once
under ``''`` (sphinx-doc/sphinx#13402, fixed in Sphinx 8.2, which jupyter-book 1 cannot use). The
second ``const`` is a SyntaxError in every reader's console. This drops the repeats.
"""
from __future__ import annotations


def _key(js) -> tuple:
    attributes = getattr(js, "attributes", {}) or {}
    return (str(getattr(js, "filename", js) or ""), getattr(js, "priority", 0), tuple(sorted(attributes.items())))


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep the first of each script in ``context["script_files"]`` (the list the page is written from)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    unique, seen = [], set()
    for js in scripts:
        if _key(js) not in seen:
            seen.add(_key(js))
            unique.append(js)
    scripts[:] = unique


def setup(app) -> dict:
    app.connect("html-page-context", dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
