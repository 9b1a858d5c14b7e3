# cs-vit: instructor-only (runs the benchmark scripts, which the student release leaves out)
"""The benchmark scripts run, on the CPU, in miniature.

Their real runs take minutes (and the GPU ones a lent machine, where a script that
breaks wastes scarce time), so these tests only check that every side builds, trains,
infers and reports: a batch of 4, one call each, no timing.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def bench(monkeypatch):
    """The bench folder importable, as when its scripts run."""
    monkeypatch.syspath_prepend(str(BENCH))
    import compare_torch
    return compare_torch


@pytest.mark.parametrize("side", ["fast", "fast_full", "textbook", "fast_graph"])
def test_every_cs_vit_side_trains_and_infers_without_an_optimizer_before_training(bench, side):
    from cs_vit import fast
    with fast.enabled(side != "textbook"):
        runner = bench.cs_vit_side(side, bench.CONFIGS["patch8"], 4, "cpu")
        runner["eval"]()
        logits = runner["infer"]()
        assert logits.shape == (4, 10)
        assert len(runner["graphs"]()) == (side == "fast_graph")  # its forward pass
        runner["model"].train()
        loss = runner["train"]()
        assert len(runner["graphs"]()) == (side == "fast_graph")  # its training step alone
    assert np.isfinite(float(loss))


def test_an_inference_probe_builds_no_optimizer_and_training_builds_one(bench):
    from cs_vit.fast.flat import shared_buffer
    runner = bench.cs_vit_side("fast", bench.CONFIGS["patch8"], 4, "cpu")

    def parameter_buffer():
        return shared_buffer([value for _, value, _ in runner["model"].parameters()])

    runner["eval"]()
    runner["infer"]()
    assert parameter_buffer() is None  # no optimizer has flattened the parameters
    optimizer, step = runner["training"]()
    assert parameter_buffer() is optimizer.flat.values and step is None
    assert runner["training"]()[0] is optimizer  # made once


def test_the_torch_side_trains_and_infers(bench):
    import torch
    torch.manual_seed(0)
    config = bench.CONFIGS["patch8"]
    runner = bench.torch_side(bench.torchvision_vit(config), config, 4, "cpu")
    assert np.isfinite(runner["train"]())
    runner["model"].eval()
    assert tuple(runner["infer"]().shape) == (4, 10)


@pytest.mark.parametrize("side", ["fast_graph", "torch"])
def test_memory_breakdown_reports_every_stage(bench, side, capsys):
    import memory_breakdown
    memory_breakdown.probe(side, "patch8", 4, "cpu")
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stages = [stage for stage, _, _ in rows]
    assert stages[0] == "start" and stages[-1].startswith("training steps")
    assert any(stage.startswith("inference") for stage in stages)
    assert all(held >= 0 and peak >= 0 for _, held, peak in rows)


def test_the_other_bench_scripts_import_or_at_least_compile(bench):
    for name in ("profile_step", "cifar10_2epochs", "cpu_limits"):
        __import__(name)
        assert name in sys.modules
    for name in ("gpu_call_overhead", "gpu_capture_probe"):  # they import CuPy at once
        path = BENCH / f"{name}.py"
        compile(path.read_text(), str(path), "exec")


def test_gpu_check_script_parses_and_every_file_it_runs_exists():
    """bench/gpu_check.sh is only ever run on a lent GPU: a syntax error or a renamed
    script would cost that machine's time, so both are caught here."""
    script = BENCH / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    named = set(re.findall(r"\b((?:bench|tests)/[\w/]+\.py)\b", script.read_text()))
    assert {"bench/compare_torch.py", "tests/test_fast_gpu.py"} <= named
    assert [path for path in sorted(named) if not (BENCH.parent / path).exists()] == []
