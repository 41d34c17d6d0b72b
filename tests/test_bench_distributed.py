"""The process-count benchmark's report and command line (the runs themselves start torchrun: see
tests/test_distributed.py for what several processes compute)."""
from __future__ import annotations

from avae_tutorial.tools.bench_distributed import format_report
from avae_tutorial.tools.cli import build_parser


def test_report_names_device_backend_and_processes():
    cond = {"device_name": "Some CPU", "device": "cpu", "cpus": 2, "load_avg_1min": 1.5, "load_avg_1min_start": 0.5,
            "torch": "2.x", "date": "today"}
    rows = [{"job": "align", "processes": 1, "backend": "none", "images": 8, "seconds": 2.0, "speedup": 1.0,
             "same_as_one": True},
            {"job": "align", "processes": 2, "backend": "gloo", "images": 8, "seconds": 1.0, "speedup": 2.0,
             "cpu_seconds": 2.25, "same_as_one": True},
            {"job": "train (aligned, 1 epoch)", "processes": 2, "backend": "gloo", "images": 8, "seconds": 1.0,
             "speedup": 1.8, "train_loss_rel_diff": 1e-3}]  # fmt: skip
    text = format_report({"conditions": cond, "rows": rows})
    assert "Some CPU" in text and "load average 0.50 at the start, 1.50 at the end" in text
    lines = text.splitlines()[2:]
    assert lines[1].split()[:5] == ["align", "2", "gloo", "8", "1.00"] and "2.00x" in lines[1] and "exactly" in lines[1]
    assert lines[1].split()[6] == "2.25"
    assert lines[2].split()[9] == "-"  # no CPU seconds for training
    assert "1.0e-03" in lines[2]


def test_align_takes_digits_for_n_under_torchrun():
    args = build_parser().parse_args(["align", "vae-upright", "--digits", "64"])
    assert args.n == 64
    args = build_parser().parse_args(["bench-distributed", "--nprocs", "1", "2", "4"])
    assert args.nprocs == [1, 2, 4] and args.device == "cpu"
