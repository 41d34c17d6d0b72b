"""The rendered book as a reader meets it: every page in headless Chromium, and every link.

The site is ``_build/html``. ``make test`` builds it (quick mode) just before running this file;
run alone, the ``site`` fixture builds it when it is missing or older than its sources. It is
served from a thread on 127.0.0.1 and read by Debian's ``chromium`` through ``chromedriver``
(Selenium), which ``.ci/run`` installs with apt. The browser resolves no host but 127.0.0.1, so
the run is the same with or without internet, and its network log records every request a page
makes. The site serves everything its pages need (MathJax, require.js and the widget manager,
the Colab badge, the favicon, the live widget's runtime): nothing is excused.

Each page of ``_toc.yml`` is checked for: no request to any host but the serving one, no console
error, every image loaded, every formula typeset by MathJax, and on chapter notebooks the Colab
launch button and badge opening that notebook. The kernel-free rotation
widget (matplotlib's ``to_jshtml`` player) must change its frame when its slider moves. A full-page
screenshot of each page goes to ``_build/screenshots/<page>.png`` (a CI artifact).

The link check reads the built HTML files: every relative link and ``#anchor`` must resolve.
"""
from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from repository import BRANCH, COLAB_PREFIX, REPO  # the address, from pyproject.toml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
BUILD_CMD = ["build", str(ROOT), "-W", "-n", "--all"]  # as the Makefile's test target
CHROME_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--window-size=1280,1000", "--force-device-scale-factor=1",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no request leaves the machine
]  # fmt: skip
MAX_SCREENSHOT_HEIGHT = 16000  # px; longer pages are cut there

pytestmark = pytest.mark.site


# ---------------------------------------------------------------------------------------------
# The pages and the built site
# ---------------------------------------------------------------------------------------------
def toc_files() -> list[str]:
    """Every page of ``_toc.yml`` (``root`` and each ``file``), relative to the root, without suffix."""
    text = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    files = re.findall(r"^\s*(?:-\s*)?(?:root|file):\s*['\"]?([^'\"\s#]+)", text, flags=re.MULTILINE)
    assert files, "_toc.yml lists no pages (no 'root:' or 'file:' entries)"
    return files


def source_of(page: str) -> Path:
    """The source file of a toc page: ``<page>.md`` or ``<page>.ipynb``."""
    for suffix in (".md", ".ipynb"):
        if (ROOT / f"{page}{suffix}").exists():
            return ROOT / f"{page}{suffix}"
    raise FileNotFoundError(f"_toc.yml lists {page}, but neither {page}.md nor {page}.ipynb exists")


PAGES = toc_files()
NOTEBOOKS = [p for p in PAGES if not (ROOT / f"{p}.md").exists()]  # chapters: toc pages that are not Markdown


def stale_pages(html: Path) -> list[str]:
    """Toc pages whose HTML is missing or older than their source, ``_config.yml`` or ``_toc.yml``."""
    config = max((ROOT / name).stat().st_mtime for name in ("_config.yml", "_toc.yml"))
    stale = []
    for page in PAGES:
        out = html / f"{page}.html"
        if not out.exists() or out.stat().st_mtime < max(config, source_of(page).stat().st_mtime):
            stale.append(page)
    return stale


def build_book() -> None:
    """``jupyter-book build`` as in ``make test`` (quick mode unless ``AVAE_MODE`` says otherwise)."""
    bindir = Path(sys.executable).parent  # the venv: jupyter-book and the kernels' "python"
    exe = shutil.which("jupyter-book", path=str(bindir)) or shutil.which("jupyter-book")
    if exe is None:
        pytest.fail("jupyter-book is not installed: run `make venv` (it installs the 'book' extra)")
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.setdefault("AVAE_MODE", "quick")
    proc = subprocess.run([exe, *BUILD_CMD], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"jupyter-book build failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")


@pytest.fixture(scope="session")
def site() -> Path:
    """``_build/html``, built first when missing or out of date."""
    if stale_pages(HTML):
        build_book()
    missing = stale_pages(HTML)
    assert not missing, f"the book build left these pages missing or stale: {missing}"
    return HTML


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # the browser hung up: nothing to report
            super().handle_error(request, client_address)


@pytest.fixture(scope="session")
def server(site: Path):
    """The site served over HTTP on 127.0.0.1 (a free port); yields its base URL."""
    httpd = QuietServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


# ---------------------------------------------------------------------------------------------
# The browser
# ---------------------------------------------------------------------------------------------
def find_program(*names: str) -> str:
    """The first of ``names`` on PATH; fails under CI, skips elsewhere, when there is none."""
    for name in names:
        if path := shutil.which(name):
            return path
    message = f"none of {names} found: install Debian's chromium and chromium-driver (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven by the system chromedriver (nothing is downloaded)."""
    options = webdriver.ChromeOptions()
    options.binary_location = find_program("chromium", "chromium-browser", "google-chrome")
    with tempfile.TemporaryDirectory(prefix="avae-chromium-") as profile:
        for flag in [*CHROME_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        service = Service(executable_path=find_program("chromedriver"))
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(60)
        try:
            yield driver
        finally:
            driver.quit()


IMAGES_JS = """
return Array.from(document.images).map(img => {
  const src = img.currentSrc || img.src || '';
  return {src: src.slice(0, 120), width: img.naturalWidth, height: img.naturalHeight};
});
"""
MATH_JS = """
const math = Array.from(document.querySelectorAll('.math'));
return {elements: math.length,
        typeset: math.filter(e => e.querySelector('mjx-container')).length,
        errors: document.querySelectorAll('mjx-merror').length};
"""
MATHJAX_DONE_JS = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) { done('no MathJax'); return; }
MathJax.startup.promise.then(() => done('typeset'), e => done('MathJax failed: ' + e));
"""
COLAB_JS = """
return Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => ({
  href: a.href, title: a.title || a.getAttribute('data-bs-original-title') || '',
  in_article: !!a.closest('article'), badge: !!a.querySelector('img[src*="colab-badge"]')}));
"""


@dataclass
class PageVisit:
    """What a reader's browser met on one page."""

    page: str
    errors: list[str]  # SEVERE console entries
    requests: list[str]  # every URL the page asked for, in order
    external: list[str]  # those on another host than the server (http, https, ws, wss)
    images: list[dict]
    math: dict
    mathjax: str
    colab: list[dict]
    screenshot: Path


def requested_urls(performance_log: list[dict]) -> list[str]:
    """The URLs of the requests (and web sockets) in a page's Chromium performance log."""
    urls = []
    for entry in performance_log:
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        elif message["method"] == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    return urls


def other_hosts(urls: list[str], base: str) -> list[str]:
    """The URLs of ``urls`` that go over the network to another host than ``base``'s (``data:`` and
    ``blob:`` URLs stay in the page)."""
    origin = urlsplit(base).netloc
    return [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != origin]


def network_quiet(driver, quiet: float = 0.5, timeout: float = 10) -> list[dict]:
    """Performance-log entries until no request has started for ``quiet`` seconds (late requests:
    a favicon, a script that loads another)."""
    log, start, last = [], time.monotonic(), time.monotonic()
    while time.monotonic() - start < timeout:
        new = driver.get_log("performance")
        log += new
        if any('"Network.requestWillBeSent"' in e["message"] for e in new):
            last = time.monotonic()
        elif time.monotonic() - last >= quiet:
            break
        time.sleep(0.1)
    return log


def wait_until(driver, script: str, timeout: float = 30) -> None:
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def full_page_screenshot(driver, path: Path) -> None:
    """The whole page (up to ``MAX_SCREENSHOT_HEIGHT`` px) as a PNG: the viewport is stretched to the
    page's height for the shot (what Puppeteer's ``fullPage`` does), then restored."""
    width, height = driver.execute_script(
        "const e = document.documentElement; return [e.clientWidth, Math.max(e.scrollHeight, document.body.scrollHeight)];"
    )
    metrics = {"width": width, "height": min(height, MAX_SCREENSHOT_HEIGHT), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def visit(driver, base: str, page: str) -> PageVisit:
    """Load ``page``, let images and MathJax finish, and record what the reader would see."""
    driver.get_log("browser")  # drop what earlier pages left
    driver.get_log("performance")
    driver.get(f"{base}/{page}.html")
    wait_until(driver, "return document.readyState === 'complete'")
    driver.execute_script("for (const img of document.images) img.loading = 'eager';")
    wait_until(driver, "return Array.from(document.images).every(img => img.complete)")
    mathjax = driver.execute_async_script(MATHJAX_DONE_JS)
    screenshot = SCREENSHOTS / f"{Path(page).name}.png"
    full_page_screenshot(driver, screenshot)
    requests = requested_urls(network_quiet(driver))
    return PageVisit(
        page=page,
        errors=[e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"],
        requests=requests,
        external=other_hosts(requests, base),
        images=driver.execute_script(IMAGES_JS),
        math=driver.execute_script(MATH_JS),
        mathjax=mathjax,
        colab=driver.execute_script(COLAB_JS),
        screenshot=screenshot,
    )


@pytest.fixture(scope="session")
def visits(browser, server):
    """``visits(page)``: the :class:`PageVisit` of ``page``, loaded once per session."""
    seen: dict[str, PageVisit] = {}

    def get(page: str) -> PageVisit:
        if page not in seen:
            seen[page] = visit(browser, server, page)
        return seen[page]

    return get


# ---------------------------------------------------------------------------------------------
# Every page in the browser
# ---------------------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_page_loads_without_console_errors(visits, page):
    v = visits(page)
    print(f"{page}: {len(v.requests)} requests, {len(v.images)} images, {v.math['typeset']} formulas typeset, "
          f"screenshot {v.screenshot.relative_to(ROOT)}")  # shown by pytest -rP
    assert not v.errors, f"{page}: {len(v.errors)} console errors:\n" + "\n".join(v.errors)
    assert v.screenshot.stat().st_size > 0


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_page_requests_nothing_from_another_host(visits, page):
    v = visits(page)
    assert v.requests, f"{page}: the network log recorded no request at all, so this test saw nothing"
    assert not v.external, f"{page}: {len(v.external)} requests to other hosts:\n" + "\n".join(v.external)


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_every_image_loads(visits, page):
    v = visits(page)
    broken = [img["src"] for img in v.images if not (img["width"] > 0 and img["height"] > 0)]
    assert not broken, f"{page}: {len(broken)} of {len(v.images)} images did not load: {broken}"


@pytest.mark.browser
def test_the_site_root_opens_the_first_page_without_errors(browser, server, site):
    """The root is a redirect that names no favicon: the browser asks for ``/favicon.ico``."""
    browser.get_log("browser")
    browser.get_log("performance")
    browser.get(f"{server}/")
    WebDriverWait(browser, 30).until(lambda d: d.current_url == f"{server}/{PAGES[0]}.html")
    wait_until(browser, "return document.readyState === 'complete'")
    requests = requested_urls(network_quiet(browser))
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors and not other_hosts(requests, server), (errors, other_hosts(requests, server))


def test_the_network_check_sees_other_hosts():
    """The checker itself, on the requests a page of the old site made."""
    base = "http://127.0.0.1:8123"
    urls = [f"{base}/book/intro.html", f"{base}/_static/widgets/require.js", "data:image/png;base64,AAAA",
            "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js",
            "https://colab.research.google.com/assets/colab-badge.svg", "http://127.0.0.1:9999/x.js",
            "ws://localhost:8123/socket"]  # fmt: skip
    assert other_hosts(urls, base) == urls[3:]


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset(visits, page):
    v = visits(page)
    m = v.math
    if m["elements"]:
        assert v.mathjax == "typeset", f"{page}: {m['elements']} formulas, but MathJax did not run: {v.mathjax}"
    assert m["typeset"] == m["elements"], f"{page}: only {m['typeset']} of {m['elements']} formulas typeset"
    assert m["errors"] == 0, f"{page}: MathJax reports {m['errors']} TeX errors (mjx-merror)"


@pytest.mark.browser
def test_the_book_has_math(visits):
    counts = {page: visits(page).math["elements"] for page in PAGES}
    assert sum(counts.values()) > 0, f"no page holds a formula, so the math check tested nothing: {counts}"


@pytest.mark.browser
@pytest.mark.parametrize("page", NOTEBOOKS)
def test_colab_launch_button_and_badge_open_this_chapter(visits, page):
    v = visits(page)
    expected = f"{COLAB_PREFIX}{page}.ipynb"
    launch = [a["href"] for a in v.colab if a["title"] == "Launch on Colab" and not a["in_article"]]  # header
    badge = [a["href"] for a in v.colab if a["in_article"] and a["badge"]]
    assert launch, f"{page}: no Colab launch button in the page header"
    assert badge, f"{page}: no Colab badge in the chapter"
    assert set(launch) == {expected}, f"{page}: launch button opens {launch}, expected {expected}"
    assert set(badge) == {expected}, f"{page}: badge opens {badge}, expected {expected}"
    assert (ROOT / f"{page}.ipynb").exists()


def animation_pages(site: Path) -> list[str]:
    """Toc pages holding a matplotlib ``to_jshtml`` player (its slider has class ``anim-slider``)."""
    return [p for p in PAGES if 'class="anim-slider"' in (site / f"{p}.html").read_text(encoding="utf-8")]


@pytest.mark.browser
def test_rotation_widget_slider_changes_the_frame(browser, server, site):
    pages = animation_pages(site)
    assert pages, "no page holds the kernel-free rotation widget (a matplotlib to_jshtml player)"
    for page in pages:
        browser.get(f"{server}/{page}.html")
        wait_until(browser, "return document.readyState === 'complete'")
        for player in browser.find_elements(By.CSS_SELECTOR, "div.animation"):
            slider = player.find_element(By.CSS_SELECTOR, "input.anim-slider")
            image = player.find_element(By.TAG_NAME, "img")
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", slider)
            shown = []
            for key in (Keys.HOME, Keys.ARROW_RIGHT, Keys.END, Keys.HOME):  # first, second, last, first frame
                slider.send_keys(key)
                shown.append((int(slider.get_attribute("value")), image.get_attribute("src")))
            (v0, first), (v1, second), (vn, last), (_, again) = shown
            assert (v0, v1) == (0, 1) and vn > 1, f"{page}: the slider did not move: values {[v for v, _ in shown]}"
            assert first.startswith("data:image/"), f"{page}: the player shows no frame: {first[:60]}"
            assert second != first and last != first, f"{page}: moving the slider did not change the frame"
            assert again == first, f"{page}: back on frame 0 the player shows another image"


# ---------------------------------------------------------------------------------------------
# Links of the built site (no browser)
# ---------------------------------------------------------------------------------------------
class LinkParser(HTMLParser):
    """Collects the ``id``s of one page and the URLs it refers to (href and src)."""

    REFS = {"a": "href", "link": "href", "area": "href", "img": "src", "script": "src", "iframe": "src", "source": "src"}

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        url = a.get(self.REFS.get(tag, ""))
        if url:
            self.refs.append((tag, url.strip()))


@functools.lru_cache(maxsize=None)
def parse_page(path: Path) -> LinkParser:
    parser = LinkParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def broken_links(site: Path, page: Path) -> list[str]:
    """Links of ``page`` that do not resolve: a missing file, a missing ``#anchor``, a malformed Colab link."""
    fake = "http://site.invalid/"  # resolve relative URLs as a browser would, then map back to files
    problems = []
    for tag, url in parse_page(page).refs:
        parts = urlsplit(urljoin(fake + page.relative_to(site).as_posix(), url))
        if parts.scheme in ("mailto", "javascript", "data", "tel"):
            continue
        if parts.netloc == "colab.research.google.com" and tag == "a":
            path = parts.path.removeprefix(urlsplit(COLAB_PREFIX).path)
            if not (url.startswith(COLAB_PREFIX) and path.endswith(".ipynb") and (ROOT / path).exists()):
                problems.append(f"{url}: not a Colab link to a notebook of {REPO}@{BRANCH}")
            continue
        if parts.scheme != "http" or parts.netloc != "site.invalid":
            continue  # another site: not reachable from here
        target = site / unquote(parts.path.lstrip("/"))
        if parts.path.endswith("/") or target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"{url}: no file {target.relative_to(site)}")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in parse_page(target).ids:
            problems.append(f"{url}: no id {unquote(parts.fragment)!r} in {target.relative_to(site)}")
    return problems


def test_internal_links_and_anchors_resolve(site):
    # _static/ holds the themes' Jinja fragments (not pages) and _sources/ the page sources.
    pages = sorted(p for p in site.rglob("*.html") if p.relative_to(site).parts[0] not in ("_static", "_sources"))
    assert len(pages) >= len(PAGES), f"expected at least {len(PAGES)} HTML pages in {site}, found {len(pages)}"
    problems = {p.relative_to(site).as_posix(): broken_links(site, p) for p in pages}
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, "broken links:\n" + "\n".join(f"{k}: {u}" for k, v in problems.items() for u in v)


def test_link_check_catches_a_broken_link(tmp_path):
    """The checker itself: a page with a missing file, a missing anchor and a bad Colab link."""
    (tmp_path / "a.html").write_text('<p id="here"></p><a href="#here">ok</a><a href="a.html#here">ok</a>')
    bad = tmp_path / "b.html"
    bad.write_text(
        '<a href="a.html#gone">x</a><a href="missing.html">x</a><img src="img/none.png">'
        f'<a href="{COLAB_PREFIX}book/no_such_chapter.ipynb">x</a><a href="https://example.org/x">ok</a>'
    )
    assert broken_links(tmp_path, tmp_path / "a.html") == []
    assert len(broken_links(tmp_path, bad)) == 4, broken_links(tmp_path, bad)


# ---------------------------------------------------------------------------------------------
# What the reader reads (no browser): tables render, code fits the page
# ---------------------------------------------------------------------------------------------
MAX_CODE_WIDTH = 88  # characters per line of a code cell or of its printed output


class TextParser(HTMLParser):
    """The text of one page in two parts: ``prose`` (outside tables, code, scripts and math) and
    ``code`` (the text of each ``<pre>``: code cells and their printed outputs)."""

    SKIP = {"table", "pre", "script", "style", "code", "textarea", "svg"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.prose: list[str] = []
        self.code: list[str] = []
        self._stack: list[tuple[str, bool]] = []  # (tag, skipped), open elements only
        self._pre: list[str] | None = None

    def _skipping(self) -> bool:
        return any(skipped for _, skipped in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        if tag == "pre" and self._pre is None:
            self._pre = []
        self._stack.append((tag, tag in self.SKIP or "math" in classes))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID or tag not in (t for t, _ in self._stack):
            return  # stray end tag
        while self._stack:
            open_tag, _ = self._stack.pop()
            if open_tag == "pre" and self._pre is not None and "pre" not in (t for t, _ in self._stack):
                self.code.append("".join(self._pre))
                self._pre = None
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._pre is not None:
            self._pre.append(data)
        if not self._skipping():
            self.prose.append(data)


def page_text(path: Path) -> TextParser:
    parser = TextParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser


TABLE_ROW = re.compile(r"^\s*\|(?:[^|\n]*\|){2,}\s*$")  # | a | b |
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$")  # |---|:--:|


def raw_markdown_tables(path: Path) -> list[str]:
    """Lines of the page's prose (text outside ``<table>``, code and math) that are Markdown table
    syntax: a table that reached the reader as text instead of being rendered."""
    lines = "".join(page_text(path).prose).splitlines()
    return [line.strip()[:100] for line in lines if TABLE_ROW.match(line) or TABLE_RULE.match(line)]


def long_code_lines(path: Path, width: int = MAX_CODE_WIDTH) -> list[str]:
    """Lines of the page's ``<pre>`` blocks longer than ``width`` characters."""
    lines = [line.rstrip() for block in page_text(path).code for line in block.splitlines()]
    return [f"{len(line)} chars: {line[:70]}..." for line in lines if len(line) > width]


@pytest.mark.parametrize("page", PAGES)
def test_no_raw_markdown_table(site, page):
    raw = raw_markdown_tables(site / f"{page}.html")
    assert not raw, f"{page}: {len(raw)} lines of Markdown table shown as text:\n" + "\n".join(raw[:10])


@pytest.mark.parametrize("page", PAGES)
def test_code_and_outputs_fit_the_page(site, page):
    long = long_code_lines(site / f"{page}.html")
    assert not long, (f"{page}: {len(long)} lines of code or printed output are longer than "
                      f"{MAX_CODE_WIDTH} characters:\n" + "\n".join(long[:15]))


def test_text_checks_catch_a_raw_table_and_a_long_line(tmp_path):
    """The checkers themselves, on hand-written pages."""
    good = tmp_path / "good.html"
    good.write_text(
        "<p>a | b is prose</p><table><tr><td>| a | b |</td></tr></table>"
        "<div class='math'>\\[ |x| + |y| + |z| \\]</div><pre>| a | b |\n|---|---|\n" + "x" * 88 + "</pre>"
    )
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<p>| family | preset |\n|---|---|\n| rotation | default |</p>"
        "<div class='cell_output'><pre><span>" + "y" * 60 + "</span>" + "y" * 29 + "</pre></div>"
    )
    assert raw_markdown_tables(good) == [] and long_code_lines(good) == []
    assert len(raw_markdown_tables(bad)) == 3, raw_markdown_tables(bad)
    assert len(long_code_lines(bad)) == 1, long_code_lines(bad)


# ---------------------------------------------------------------------------------------------
# Figures legible as displayed
# ---------------------------------------------------------------------------------------------
MIN_TEXT_PX = 9  # the smallest text of a figure, in CSS px as displayed
FIGURES_JS = """
return Array.from(document.querySelectorAll('article img')).filter(img => {
  const path = new URL(img.currentSrc || img.src, location.href).pathname;
  return path.endsWith('.png') && !img.closest('.animation');  // not the animation's frames
}).map(img => ({path: new URL(img.currentSrc || img.src, location.href).pathname,
                natural: img.naturalWidth, shown: img.getBoundingClientRect().width}));
"""


def png_dpi(path: Path) -> float | None:
    """The resolution a PNG records (its ``pHYs`` chunk, which matplotlib writes), in dots per inch."""
    data, pos = path.read_bytes(), 8
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if kind == b"pHYs":
            per_unit, unit = int.from_bytes(data[pos + 8 : pos + 12], "big"), data[pos + 16]
            return per_unit * 0.0254 if unit == 1 else None  # unit 1: per metre
        pos += 12 + length
    return None


def figure_text_px(png: Path, natural: float, shown: float) -> float:
    """The smallest text of a figure in CSS px as displayed: its size in points (recorded in the PNG
    by ``plotting.figure_png``) at the PNG's dpi, scaled by how much the page shrinks the image."""
    from avae_tutorial.lessons.plotting import TEXT_KEY, png_text

    data = png.read_bytes()
    pt, dpi = png_text(data, TEXT_KEY), png_dpi(png)
    assert pt is not None, f"{png.name} records no text size (was it shown through lessons.notebook.setup()?)"
    assert dpi, f"{png.name} records no resolution"
    return float(pt) / 72 * dpi * shown / natural


@pytest.mark.browser
@pytest.mark.parametrize("page", NOTEBOOKS)
def test_figure_text_is_legible_as_displayed(browser, server, site, page):
    """Each figure's smallest text (titles, labels, ticks, legends), scaled by how much the page
    shrinks the image to fit its column, is at least 9 CSS px on screen."""
    browser.get(f"{server}/{page}.html")
    wait_until(browser, "return document.readyState === 'complete'")
    browser.execute_script("for (const img of document.images) img.loading = 'eager';")
    wait_until(browser, "return Array.from(document.images).every(img => img.complete)")
    small = []
    for f in browser.execute_script(FIGURES_JS):
        png = site / unquote(f["path"]).lstrip("/")
        px = figure_text_px(png, f["natural"], f["shown"])
        print(f"{page}: {png.name} {f['natural']} px shown at {f['shown']:.0f} px: smallest text {px:.1f} px")
        if px < MIN_TEXT_PX:
            small.append(f"{png.name}: {px:.1f} px ({f['natural']} px shown at {f['shown']:.0f})")
    assert not small, f"{page}: figure text below {MIN_TEXT_PX} px as displayed:\n" + "\n".join(small)


def test_figure_text_size_is_read_from_the_png(tmp_path):
    """The check itself: a figure with 6 pt text at 100 dpi shown at half its width is 4.2 px."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from avae_tutorial.lessons.plotting import TEXT_KEY, png_text, png_text_chunk, smallest_text_pt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.set_title("small", fontsize=6)
    ax.tick_params(labelsize=11)
    path = tmp_path / "f.png"
    fig.savefig(path, dpi=100)
    assert smallest_text_pt(fig) == 6
    path.write_bytes(png_text_chunk(path.read_bytes(), TEXT_KEY, "6"))
    plt.close(fig)
    assert png_text(path.read_bytes(), TEXT_KEY) == "6"
    assert abs(figure_text_px(path, 400, 200) - 6 / 72 * 100 / 2) < 0.05
