"""Chapter 2's live widget in headless Chromium: the model running in the page, against the package.

The built site (``_build/html``, see ``test_site.py`` for how it is built, served on 127.0.0.1 and
read by Chromium with every other host unresolvable) carries ``_static/avae_live/``: the
``vae-upright`` graph exported to ONNX at build time, 20 test digits, and onnxruntime-web's
WebAssembly build. The page exposes ``window.avaeLive`` = ``{ready, count, digit(i), score(i, deg)}``;
these tests hold it to the package: the plain VAE's loss to 0.05 nats of ``avae_loss``, the AVAE's
within 0.5 nats of ``align``'s, on the same digit (read from the page) turned the same way. They
also move the slider and draw on the canvas, time the answers (printed; ``pytest -rP``), check
that nothing is fetched from another host, and that a browser without WebAssembly gets a clear
message and keeps the precomputed player. A screenshot of the widget in use goes to
``_build/screenshots/live_widget.png``.
"""
from __future__ import annotations

import hashlib
import json
import math
import statistics

import pytest
import torch
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from test_site import ROOT, SCREENSHOTS, browser, server, site, wait_until  # noqa: F401 (fixtures)

import avae_tutorial as avae

pytestmark = [pytest.mark.site, pytest.mark.browser]

PAGE = "book/02_affine_wrapper"
MODEL = "vae-upright"
ASSETS = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm", f"{MODEL}.onnx", "digits.json")
#: (digit index on the page, degrees): every class, angles all around the circle.
CASES = [(0, 0), (1, 30), (2, 90), (3, -45), (4, 135), (5, 180), (6, -120), (7, 60), (8, -90), (9, 15),
         (17, 200), (19, -10)]  # fmt: skip

READY_JS = """
const done = arguments[arguments.length - 1];
if (!window.avaeLive) { done('no window.avaeLive'); return; }
window.avaeLive.ready.then(() => done('ready'), (e) => done('failed: ' + e.message));
"""
SCORE_JS = """
const [cases, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const out = [];
  for (const [i, deg] of cases) {
    const t0 = performance.now();
    const r = await window.avaeLive.score(i, deg);
    out.push({i, deg, ...r, ms: performance.now() - t0});
  }
  return out;
})().then(done, (e) => done('failed: ' + e.message));
"""
SHOWN_JS = "return Number(document.getElementById('avae-live').dataset.shown || 0);"
STATE_JS = """
const root = document.getElementById('avae-live');
const image = (sel) => root.querySelector(sel).toDataURL();
return {vae: Number(root.dataset.vae), avae: Number(root.dataset.avae), angle: Number(root.dataset.angle),
        input: root.querySelectorAll('canvas.avae-live-image')[0].toDataURL(), drawn: image('canvas.avae-live-draw'),
        captions: Array.from(root.querySelectorAll('figcaption')).map((f) => f.textContent)};
"""


@pytest.fixture(scope="module")
def live(browser, server):  # noqa: F811 (the fixtures imported from test_site)
    """Chapter 2 loaded and its model ready; yields the driver with the page's console log so far."""
    browser.get_log("browser")  # drop what earlier pages left
    browser.get(f"{server}/{PAGE}.html")
    wait_until(browser, "return document.readyState === 'complete'")
    state = browser.execute_async_script(READY_JS)
    assert state == "ready", f"{PAGE}: the live widget did not start: {state}"
    wait_until(browser, f"{SHOWN_JS[:-1]} > 0", timeout=60)  # the first answer is on the page
    return browser


@pytest.fixture(scope="module")
def upright() -> avae.VAE:
    return avae.load_pretrained(MODEL).eval()


def page_digit(driver, i: int) -> torch.Tensor:
    values = driver.execute_script("return Array.from(window.avaeLive.digit(arguments[0]));", i)
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 40, 40)


def turn(x: torch.Tensor, deg: float) -> torch.Tensor:
    """The package's convention: ``warp(x, rotation(radians(deg)))``."""
    return avae.warp(x, avae.rotation(torch.tensor([math.radians(deg)], dtype=torch.float32)))


def wait_for_answer(driver, shown_before: int) -> dict:
    """Wait until the widget has shown a new answer and gone quiet; returns what it shows."""
    wait_until(driver, f"{SHOWN_JS[:-1]} > {shown_before}", timeout=30)
    last = None
    while (now := driver.execute_script(SHOWN_JS)) != last:  # more moves may still be queued
        last = now
        driver.execute_script("return new Promise((r) => setTimeout(r, 300));")
    return driver.execute_script(STATE_JS)


# ---------------------------------------------------------------------------------------------
# The files the site ships
# ---------------------------------------------------------------------------------------------
def test_live_widget_files_are_in_the_site_and_checked(site):  # noqa: F811
    folder = site / "_static" / "avae_live"
    summary = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    assert sorted(summary["files"]) == sorted(ASSETS), "the site should ship exactly the files the page loads"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*ASSETS, "export.json"])
    for name, entry in summary["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"], name
    manifest = json.loads((ROOT / "avae_tutorial" / "pretrained" / "manifest.json").read_text(encoding="utf-8"))
    assert summary["source_sha256"] == manifest["models"][MODEL]["sha256"], "the graph is not from the shipped weights"
    assert summary["max_abs_loss_diff"] <= 1e-3
    lock = json.loads((ROOT / "package-lock.json").read_text(encoding="utf-8"))
    assert summary["runtime"] == f"onnxruntime-web {lock['packages']['node_modules/onnxruntime-web']['version']}"
    for script in ("avae_live.js", "avae_live.css"):
        assert (site / "_static" / script).is_file()
    sizes = {name: entry["bytes"] for name, entry in summary["files"].items()}
    sizes |= {name: (site / "_static" / name).stat().st_size for name in ("avae_live.js", "avae_live.css")}
    print(f"the live widget ships {sum(sizes.values()):,} bytes: {sizes}")  # pytest -rP


# ---------------------------------------------------------------------------------------------
# The page contract against the package
# ---------------------------------------------------------------------------------------------
def test_live_contract_offers_the_shipped_digits(live, site):  # noqa: F811
    count = live.execute_script("return window.avaeLive.count;")
    assert count == 20
    kind = live.execute_script("const d = window.avaeLive.digit(3); return [d.constructor.name, d.length];")
    assert kind == ["Float32Array", 1600]
    digits = json.loads((site / "_static" / "avae_live" / "digits.json").read_text(encoding="utf-8"))
    import base64

    stored = torch.frombuffer(bytearray(base64.b64decode(digits["pixels"])), dtype=torch.uint8).float() / 255
    for i in (0, 7, 19):
        x = page_digit(live, i)
        assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.5
        assert torch.allclose(x.flatten(), stored[i * 1600 : (i + 1) * 1600], atol=1e-6)
    with_bad = live.execute_async_script(
        "const done = arguments[0]; window.avaeLive.score(99, 0).then(() => done('accepted'), (e) => done(e.name));")
    assert with_bad == "RangeError"


def test_live_score_agrees_with_the_package(live, upright):
    """The plain VAE's loss to 0.05 nats of ``avae_loss``; the AVAE's loss no more than 0.5 nats
    above ``align``'s (its grid search may find a lower minimum than ``align``'s parabolic steps:
    then both are shown), and equal to ``avae_loss`` at the angle the page reports."""
    answers = live.execute_async_script(SCORE_JS, CASES)
    assert isinstance(answers, list), answers
    rows, same_basin = [], []
    for r in answers:
        x = turn(page_digit(live, r["i"]), r["deg"])
        with torch.no_grad():
            vae = avae.avae_loss(upright, x).item()
            res = avae.align(upright, x, "rotation")
            at_angle = avae.avae_loss(upright, x, avae.rotation(torch.tensor([math.radians(r["angle"])]))).item()
        found = math.degrees(res.angle.item())
        rows.append(f"digit {r['i']:2d} turned {r['deg']:+4d}: VAE page {r['vae']:7.2f} package {vae:7.2f} | "
                    f"AVAE page {r['avae']:7.2f} at {r['angle']:+7.1f} deg, align {res.loss.item():7.2f} at {found:+7.1f}")
        assert abs(r["vae"] - vae) <= 0.05, rows[-1]
        assert r["avae"] <= res.loss.item() + 0.5, rows[-1]
        assert abs(r["avae"] - at_angle) <= 0.05, rows[-1]
        assert r["avae"] <= r["vae"] + 1e-4 and -180 <= r["angle"] < 180, rows[-1]
        if abs((r["angle"] - found + 180) % 360 - 180) <= 5:  # the same minimum: the same loss
            same_basin.append(abs(r["avae"] - res.loss.item()))
    print("\n".join(rows))
    # Where both land in the same minimum they agree, but for at most one digit: the package's
    # adaptive refinement (settle) may stop on an exact quarter turn, a lossless warp whose loss
    # is a cusp beside the blurred turns around it (the "2" turned by 90 degrees: 134.9 nats at
    # 90.0 against 132.8 at 88.0, where the page's fine scan lands).
    assert len(same_basin) >= len(CASES) // 2, same_basin
    assert sorted(same_basin)[len(same_basin) // 2] <= 0.05 and sum(d > 0.5 for d in same_basin) <= 1, same_basin


def test_live_time_per_move(live):
    """One move = one ``score`` call: the digit turned, 38 candidates in 3 batches. Every move is
    answered, in order; the time is a printed measurement (a shared CI machine says little about
    a reader's laptop, where the target is about 100 ms)."""
    live.execute_async_script(SCORE_JS, [[0, 10]])  # warm-up
    moves = [[i % 20, (37 * i) % 360 - 180] for i in range(16)]
    answers = live.execute_async_script(SCORE_JS, moves)
    assert isinstance(answers, list), answers  # a failed score returns its message
    assert [[a["i"], a["deg"]] for a in answers] == moves and all(a["ms"] > 0 for a in answers)
    ms = [a["ms"] for a in answers]
    print(f"time per move in headless Chromium: median {statistics.median(ms):.0f} ms, "
          f"min {min(ms):.0f} ms, max {max(ms):.0f} ms over {len(ms)} moves")


# ---------------------------------------------------------------------------------------------
# The widget in use
# ---------------------------------------------------------------------------------------------
def test_live_slider_and_drawing_change_the_output(live):
    root = live.find_element(By.ID, "avae-live")
    live.execute_script("arguments[0].scrollIntoView({block: 'start'});", root)
    slider = root.find_element(By.CSS_SELECTOR, "input.avae-live-slider")
    before = live.execute_script(STATE_JS)

    shown = live.execute_script(SHOWN_JS)
    for _ in range(40):  # +40 degrees, one keystroke per degree: 40 moves, answered as they come
        slider.send_keys(Keys.ARROW_RIGHT)
    turned = wait_for_answer(live, shown)
    assert slider.get_attribute("value") == "40"
    assert turned["input"] != before["input"], "turning the digit did not change the input shown"
    assert turned["vae"] != before["vae"] and turned["captions"] != before["captions"]
    assert any("+40°" in c for c in turned["captions"]), turned["captions"]

    root.find_element(By.CSS_SELECTOR, "button.avae-live-clear").click()
    shown = live.execute_script(SHOWN_JS)
    pad = root.find_element(By.CSS_SELECTOR, "canvas.avae-live-draw")  # 160 px: 4 px per pixel
    ActionChains(live).move_to_element_with_offset(pad, -36, -40).click_and_hold().move_by_offset(64, 0) \
        .move_by_offset(-36, 88).release().perform()  # a "7": the bar, then the stem
    drawn = wait_for_answer(live, shown)
    assert drawn["drawn"] != turned["drawn"], "drawing did not change the digit"
    assert drawn["vae"] != turned["vae"] and drawn["input"] != turned["input"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    root.screenshot(str(SCREENSHOTS / "live_widget.png"))
    print(f"screenshot: {(SCREENSHOTS / 'live_widget.png').relative_to(ROOT)}; shown: {drawn['captions']}")


def test_live_widget_loads_everything_from_the_site_without_errors(live, server):  # noqa: F811
    urls = live.execute_script("return performance.getEntriesByType('resource').map((e) => e.name);")
    live_urls = [u for u in urls if "avae_live" in u or u.endswith((".wasm", ".onnx", ".mjs"))]
    assert {u.rsplit("/", 1)[-1] for u in live_urls} >= {*ASSETS, "avae_live.js", "avae_live.css"}, live_urls
    assert all(u.startswith(server) for u in live_urls), f"fetched from elsewhere: {live_urls}"
    errors = [e["message"] for e in live.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, "console errors:\n" + "\n".join(errors)


def test_live_widget_without_webassembly_keeps_the_player(browser, server):  # noqa: F811
    hide = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.WebAssembly;"})
    try:
        browser.get_log("browser")
        browser.get(f"{server}/{PAGE}.html")
        wait_until(browser, "return document.readyState === 'complete'")
        assert browser.execute_async_script(READY_JS).startswith("failed")
        status = browser.find_element(By.CSS_SELECTOR, "#avae-live .avae-live-status").text
        assert "WebAssembly" in status and "player" in status, status
        assert browser.find_elements(By.CSS_SELECTOR, "div.animation input.anim-slider"), "the fallback player is gone"
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": hide["identifier"]})
