"""Tests for avae_tutorial.lessons.widgets on a tiny untrained VAE and synthetic digits."""
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import avae_tutorial as avae  # noqa: E402
from avae_tutorial.lessons.widgets import rotation_animation, rotation_explorer, rotation_frames  # noqa: E402

FAST = avae.AlignConfig(restarts=8, top_k=1, steps=2, lr=0.1)


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return avae.VAE(latent_dim=2, canvas=40).eval()


@pytest.fixture(scope="module")
def digits():
    return avae.data.mnist.synthetic_digits(n=4, canvas=40, seed=1)


@pytest.fixture(scope="module")
def frames(vae, digits):
    return rotation_frames(vae, digits[0][0], [0, 90, 180, 270], config=FAST)


def test_frames_hold_the_rotated_digit_and_both_reconstructions(frames, digits):
    x = digits[0][0, 0].numpy()
    assert len(frames) == 4
    for name in ("inputs", "vae_rec", "avae_rec"):
        assert getattr(frames, name).shape == (4, 40, 40)
    np.testing.assert_allclose(frames.inputs[0], x, atol=1e-6)
    np.testing.assert_allclose(frames.inputs[1], np.rot90(x, 1), atol=1e-5)  # positive = counter-clockwise
    np.testing.assert_array_equal(frames.angles_deg, [0, 90, 180, 270])


def test_frame_losses_match_the_package_loss(frames, vae):
    xr = torch.from_numpy(frames.inputs)[:, None]
    with torch.no_grad():
        plain = avae.avae_loss(vae, xr)
        searched = avae.avae_loss(vae, xr, avae.rotation(torch.deg2rad(torch.from_numpy(frames.found_deg))))
    np.testing.assert_allclose(frames.vae_loss, plain.numpy(), rtol=1e-5)
    np.testing.assert_allclose(frames.avae_loss, searched.numpy(), rtol=1e-4)
    assert (frames.avae_loss <= frames.vae_loss + 1e-4).all()  # the search never loses to the identity
    assert ((frames.found_deg >= -180) & (frames.found_deg < 180)).all()


def test_frames_leave_the_model_as_it_was(digits):
    vae = avae.VAE(latent_dim=2, canvas=40).train()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    rotation_frames(vae, digits[0][1:2], [30], config=FAST)
    assert vae.training
    for k, v in vae.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_frames_reject_more_than_one_digit(vae, digits):
    with pytest.raises(ValueError, match="one digit"):
        rotation_frames(vae, digits[0][:2], [0])
    with pytest.raises(ValueError, match="angles_deg"):
        rotation_frames(vae, digits[0][0], [])


def test_animation_is_a_javascript_player_with_one_image_per_frame(frames):
    html = rotation_animation(frames)
    assert re.search(r'<input[^>]*type="range"', html), "no frame slider in the HTML"
    assert len(re.findall(r"frames\[\d+\] = \"data:image/png;base64,", html)) == len(frames)
    # consecutive frames differ (the digit turns)
    images = re.findall(r'frames\[\d+\] = "data:image/png;base64,(.*?)"', html, re.S)
    assert len(set(images)) == len(frames)


def test_animation_needs_nothing_from_another_host(frames):
    """matplotlib's player links font-awesome from a CDN for its button icons; ours has text symbols."""
    html = rotation_animation(frames)
    assert not re.search(r"(?:href|src)=[\"']?(?:https?:)?//", html), "the player links an outside resource"
    assert "font-awesome" not in html and 'class="fa ' not in html
    icons = re.findall(r"<button[^>]*>\s*<svg[^>]*><path[^>]* d=\"([^\"]+)\"", html)
    assert len(icons) == 9 and len(set(icons)) == 9, icons  # one distinct icon per button


def test_explorer_offers_the_widget_and_a_still_for_static_pages(vae, digits):
    pytest.importorskip("ipywidgets")
    x, y = digits
    ex = rotation_explorer(vae, x, labels=y, config=FAST)
    bundle = ex._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget.model_id
    still = bundle["text/html"]
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', still)
    assert ex.text.value in still and "kernel" in still
    assert "kernel" in bundle["text/plain"]


def test_explorer_updates_the_loss_text_and_image_on_change(vae, digits):
    pytest.importorskip("ipywidgets")
    x, y = digits
    ex = rotation_explorer(vae, x, labels=y, config=FAST, angle_step=15)
    assert ex.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    text0, image0 = ex.text.value, ex.image.value
    assert "<b>0°</b>" in text0
    ex.angle.value = 90  # what moving the slider does
    assert ex.text.value != text0 and "<b>90°</b>" in ex.text.value
    assert ex.image.value != image0
    assert f"{ex.frame.vae_loss[0]:.1f}" in ex.text.value
    ex.digit.value = 3
    np.testing.assert_allclose(ex.frame.inputs[0], np.rot90(x[3, 0].numpy(), 1), atol=1e-5)
    assert ex.digit.options[3][0] == f"#3 (a {int(y[3])})"


def test_explorer_checks_its_inputs(vae, digits):
    pytest.importorskip("ipywidgets")
    x, y = digits
    with pytest.raises(ValueError, match="labels"):
        rotation_explorer(vae, x, labels=y[:2])
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        rotation_explorer(vae, x[0])


COLAB_IPYWIDGETS = ["ipywidgets==7.7.1", "ipython_genutils==0.2.0"]  # what Colab ships; 7.x needs genutils
MOVE_THE_SLIDER = """
import json, torch, ipywidgets
import avae_tutorial as avae
from avae_tutorial.lessons.widgets import rotation_explorer
torch.manual_seed(0)
vae = avae.VAE(latent_dim=2, canvas=40).eval()
x, y = avae.data.mnist.synthetic_digits(n=3, canvas=40, seed=1)
ex = rotation_explorer(vae, x, labels=y, config=avae.AlignConfig(restarts=8, top_k=1, steps=2, lr=0.1))
before = (ex.text.value, ex.image.value, ex.frame.vae_loss[0].item())
ex.angle.value = 90  # what moving the slider does
print(json.dumps({"version": ipywidgets.__version__, "file": ipywidgets.__file__, "text": [before[0], ex.text.value],
                  "image_changed": ex.image.value != before[1], "loss": [before[2], ex.frame.vae_loss[0].item()],
                  "bundle": sorted(ex._repr_mimebundle_())}))
"""


#: Where ``make venv`` puts the wheels of :data:`COLAB_IPYWIDGETS` (``pip download``, once).
WHEELS = Path(__file__).resolve().parents[1] / ".cache" / "wheels"


@pytest.fixture(scope="module")
def colab_ipywidgets(tmp_path_factory) -> Path:
    """ipywidgets 7.7.1 unpacked into a side folder from the wheels that ``make venv`` fetched (pure
    Python wheels: unpacked, they import as installed): the test never reaches the network. Without
    the wheels it is skipped, and fails under CI, whose ``make venv`` fetches them."""
    wheels = []
    for name, version in (spec.split("==") for spec in COLAB_IPYWIDGETS):
        found = sorted(WHEELS.glob(f"{name}-{version}-*.whl"))
        if not found:
            message = (f"no wheel of {name}=={version} in {WHEELS}: `make venv` fetches it "
                       f"(pip download --no-deps --only-binary=:all: -d .cache/wheels {' '.join(COLAB_IPYWIDGETS)})")
            pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
        wheels.append(found[0])
    target = tmp_path_factory.mktemp("ipywidgets-7.7.1")
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(target)
    return target


def test_make_venv_fetches_the_wheels_this_test_installs():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^COLAB_WIDGETS \?= (.+)$", makefile, re.M)[1].split() == COLAB_IPYWIDGETS
    assert re.search(r"^WHEELS +:= (.+)$", makefile, re.M)[1] == WHEELS.relative_to(WHEELS.parents[1]).as_posix()


def test_explorer_moves_under_colabs_ipywidgets_7(colab_ipywidgets):
    """Colab ships ipywidgets 7.7.1: the explorer builds and follows its slider there too."""
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(colab_ipywidgets), str(root), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}  # one thread, as here
    proc = subprocess.run([sys.executable, "-c", MOVE_THE_SLIDER], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["version"] == "7.7.1" and Path(got["file"]).is_relative_to(colab_ipywidgets), got
    before, after = got["text"]
    assert "<b>0°</b>" in before and "<b>90°</b>" in after and got["image_changed"], got
    assert "application/vnd.jupyter.widget-view+json" in got["bundle"], got
