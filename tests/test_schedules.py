import numpy as np
import pytest
import torch

from cs_vit.optim import SGD, ConstantLR, StepLR, WarmupCosineLR, make_schedule, set_lr


def torch_lrs(make_scheduler, base_lr, steps):
    """The lr torch uses at steps 0 .. steps-1 for a scheduler over one dummy parameter."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_is_linear_and_peaks_at_warmup_end():
    schedule = WarmupCosineLR(base_lr=0.1, warmup_steps=4, total_steps=20)
    warmup = [schedule(step) for step in range(5)]
    assert 0.0 < warmup[0] < 0.1 * 0.25
    assert np.allclose(np.diff(warmup), warmup[0])
    assert schedule(4) == pytest.approx(0.1)
    assert max(schedule(step) for step in range(25)) == schedule(4)


def test_cosine_ends_at_min_lr_and_stays_there():
    schedule = WarmupCosineLR(base_lr=0.1, warmup_steps=3, total_steps=20, min_lr=1e-3)
    assert schedule(20) == pytest.approx(1e-3)
    assert schedule(50) == pytest.approx(1e-3)
    cosine = [schedule(step) for step in range(3, 21)]
    assert all(a > b for a, b in zip(cosine, cosine[1:]))


def test_warmup_matches_torch_linear_lr():
    schedule = WarmupCosineLR(base_lr=0.1, warmup_steps=5, total_steps=30)
    expected = torch_lrs(lambda opt: torch.optim.lr_scheduler.LinearLR(
        opt, start_factor=1 / 6, end_factor=5 / 6, total_iters=4), 0.1, 5)
    assert [schedule(step) for step in range(5)] == pytest.approx(expected, rel=1e-12)


def test_cosine_phase_matches_torch_cosine_annealing_lr():
    schedule = WarmupCosineLR(base_lr=0.1, warmup_steps=5, total_steps=30, min_lr=0.01)
    expected = torch_lrs(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=25, eta_min=0.01), 0.1, 26)
    assert [schedule(step) for step in range(5, 31)] == pytest.approx(expected, rel=1e-12)


def test_step_lr_matches_torch():
    schedule = StepLR(base_lr=0.1, step_size=3, gamma=0.5)
    expected = torch_lrs(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 3, gamma=0.5), 0.1, 12)
    assert [schedule(step) for step in range(12)] == pytest.approx(expected, rel=1e-12)


def test_constant_lr_is_constant():
    assert {ConstantLR(0.05)(step) for step in range(10)} == {0.05}


def test_make_schedule_builds_each_schedule():
    assert isinstance(make_schedule("constant", 0.1, total_steps=10), ConstantLR)
    step = make_schedule("step", 0.1, total_steps=10, step_size=2, gamma=0.3)
    assert isinstance(step, StepLR) and step(2) == pytest.approx(0.03)
    cosine = make_schedule("cosine", 0.1, total_steps=10, warmup_steps=2, min_lr=0.01)
    assert isinstance(cosine, WarmupCosineLR) and cosine(10) == pytest.approx(0.01)


def test_make_schedule_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        make_schedule("linear", 0.1, total_steps=10)


def test_make_schedule_rejects_warmup_outside_cosine():
    with pytest.raises(ValueError, match="only supported by the 'cosine' schedule"):
        make_schedule("step", 0.1, total_steps=10, warmup_steps=2, step_size=3)


@pytest.mark.parametrize("make, match", [
    (lambda: WarmupCosineLR(0.1, warmup_steps=11, total_steps=10), "must not exceed total_steps"),
    (lambda: WarmupCosineLR(0.1, warmup_steps=0, total_steps=10, min_lr=0.2), "min_lr"),
    (lambda: StepLR(0.1, step_size=0), "step_size must be a positive integer"),
    (lambda: ConstantLR(-0.1), "base_lr must be a finite number >= 0"),
])
def test_schedules_reject_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_set_lr_changes_the_optimizer_lr():
    optimizer = SGD([("w", np.ones(2), np.zeros(2))], lr=0.1)
    set_lr(optimizer, 0.02)
    assert optimizer.lr == 0.02
