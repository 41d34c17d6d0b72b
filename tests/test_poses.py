"""Aligning a reader's images chunk by chunk: equal to one align() call, subsets in the order
given, the angle convention of the pose table, and resuming a cut-off table."""
from __future__ import annotations

import math

import pytest
import torch

import avae_tutorial as avae
from avae_tutorial.data.images import open_images, save_images
from avae_tutorial.training.poses import align_images, done_names, iter_align, pose_columns, pose_rows

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def folder(tmp_path):
    x, _ = avae.data.mnist.synthetic_digits(7, canvas=28, seed=4)
    save_images(x, [tmp_path / f"{i}.png" for i in range(7)])
    return tmp_path


def test_an_image_turned_by_plus_30_degrees_gets_about_minus_30(tmp_path, template_vae, seven):
    """The convention of the CSV: warp(x, rotation(radians(angle_deg))) is what the model encodes."""
    turned = avae.warp(seven, avae.rotation(torch.tensor([math.radians(30.0)])))
    save_images(turned, [tmp_path / "turned.png"])
    ds = open_images(tmp_path, canvas=28)
    (chunk,) = iter_align(template_vae, ds, "rotation", avae.AlignConfig(restarts=24, steps=6))
    (row,) = pose_rows(ds.names, chunk)
    assert row["file"] == "turned.png" and abs(row["angle_deg"] + 30) < 3, row
    assert row["loss_after"] < row["loss_before"]


def test_aligning_a_folder_in_chunks_equals_aligning_the_tensor(folder, tiny_vae):
    x, _ = avae.load_images(folder, canvas=28)
    cfg = avae.AlignConfig(restarts=4, steps=1)
    want = avae.align(tiny_vae, x, "rotation", cfg)
    got, idx, bad = align_images(tiny_vae, open_images(folder, canvas=28), "rotation", cfg, batch_size=3)
    assert idx == list(range(7)) and bad == []
    torch.testing.assert_close(got.angle, want.angle, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.loss, want.loss, atol=1e-3, rtol=1e-5)
    sub, idx, _ = align_images(tiny_vae, x, "rotation", cfg, indices=[6, 2], batch_size=1)
    assert idx == [6, 2]
    torch.testing.assert_close(sub.loss, want.loss[[6, 2]], atol=1e-3, rtol=1e-5)


def test_the_pose_table_columns_and_a_cut_off_last_row(tmp_path):
    assert pose_columns("rotation") == ["file", "angle_deg", "loss_before", "loss_after"]
    assert pose_columns("affine") == ["file", "angle_deg", "loss_before", "loss_after", "shear", "log_sx", "log_sy"]
    path = tmp_path / "p.csv"
    path.write_text("file,angle_deg,loss_before,loss_after\na.png,1,2,3\nb.png,4,5")
    assert done_names(path, pose_columns()) == ["a.png"]
    assert path.read_text() == "file,angle_deg,loss_before,loss_after\na.png,1,2,3\n"
    with pytest.raises(ValueError, match=r"exists with columns .* pass --restart"):
        done_names(path, pose_columns("affine"))
