import io

import numpy as np
import pytest
import torch

from cs_vit.layers import Linear
from cs_vit.optim import SGD, Adam, AdamW, clip_grad_norm, decays
from tests.gradcheck import FLOAT32_RTOL, assert_all_close
from tests.gradcheck import torch_optimizer as torch_optimizer_over

SHAPES = {
    "patch_embed.proj.weight": (4, 3),
    "patch_embed.proj.bias": (4,),
    "cls_token": (1, 1, 4),
    "pos_embed": (1, 3, 4),
    "blocks.0.norm1.weight": (4,),
    "head.weight": (2, 4),
    "head.bias": (2,),
}
DECAYED = {"patch_embed.proj.weight", "head.weight"}
TORCH_OPTIM_TOL = 1e-9

CONFIGS = {
    "sgd": (SGD, torch.optim.SGD, dict(lr=0.1)),
    "sgd_momentum": (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    "sgd_nesterov_decay": (SGD, torch.optim.SGD,
                           dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.1)),
    "sgd_decay_everything": (SGD, torch.optim.SGD,
                             dict(lr=0.1, momentum=0.5, weight_decay=0.1, no_decay=None)),
    "adam": (Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.95))),
    "adam_decay": (Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.1, eps=1e-6)),
    "adamw": (AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.2)),
    "adamw_decay_everything": (AdamW, torch.optim.AdamW,
                               dict(lr=0.01, weight_decay=0.2, no_decay=None)),
}


def make_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [(name, rng.standard_normal(shape).astype(dtype), np.zeros(shape, dtype))
            for name, shape in SHAPES.items()]


def gradient_stream(steps, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
            for _ in range(steps)]


def run(optimizer, params, grads, lrs):
    for lr, step_grads in zip(lrs, grads):
        optimizer.lr = lr
        for name, _, grad in params:
            grad[...] = step_grads[name]
        optimizer.step()


def torch_optimizer(torch_cls, params, kwargs):
    kwargs = dict(kwargs)
    decay_everything = "no_decay" in kwargs and kwargs.pop("no_decay") is None
    tensors = {name: torch.tensor(value, requires_grad=True) for name, value, _ in params}
    decayed = set(tensors) if decay_everything else DECAYED
    return torch_optimizer_over(torch_cls, tensors, decayed, **kwargs), tensors


@pytest.mark.parametrize("config", CONFIGS)
def test_optimizer_matches_torch_for_20_steps(config):
    ours_cls, torch_cls, kwargs = CONFIGS[config]
    params = make_params()
    ref, tensors = torch_optimizer(torch_cls, params, kwargs)
    optimizer = ours_cls(params, **kwargs)
    lrs = kwargs["lr"] * np.linspace(1.0, 0.2, 20)
    for lr, step_grads in zip(lrs, gradient_stream(20)):
        run(optimizer, params, [step_grads], [lr])
        for group in ref.param_groups:
            group["lr"] = lr
        for name, t in tensors.items():
            t.grad = torch.tensor(step_grads[name])
        ref.step()
        worst = max(np.max(np.abs(value - tensors[name].detach().numpy()))
                    for name, value, _ in params)
        assert worst <= TORCH_OPTIM_TOL


@pytest.mark.parametrize("config", CONFIGS)
def test_state_dict_round_trip_resumes_bitwise(config):
    ours_cls, _, kwargs = CONFIGS[config]
    grads, lrs = gradient_stream(10), np.linspace(0.1, 0.01, 10)
    params = make_params()
    run(ours_cls(params, **kwargs), params, grads, lrs)

    first = make_params()
    optimizer = ours_cls(first, **kwargs)
    run(optimizer, first, grads[:5], lrs[:5])
    buffer = io.BytesIO()
    np.savez(buffer, **optimizer.state_dict())
    buffer.seek(0)
    saved = dict(np.load(buffer))
    resumed = [(name, value.copy(), np.zeros_like(grad)) for name, value, grad in first]
    optimizer = ours_cls(resumed, **kwargs)
    optimizer.load_state_dict(saved)
    assert optimizer.step_count == 5
    run(optimizer, resumed, grads[5:], lrs[5:])
    for (_, expected, _), (_, got, _) in zip(params, resumed):
        assert np.array_equal(expected, got)


def test_load_state_dict_rejects_state_of_other_parameters():
    optimizer = Adam(make_params())
    state = optimizer.state_dict()
    state["exp_avg/head.weight"] = np.zeros((3, 4))
    with pytest.raises(ValueError, match="head.weight.*shape"):
        Adam(make_params()).load_state_dict(state)
    with pytest.raises(ValueError, match="missing keys"):
        Adam([("w", np.ones((2, 2)), np.zeros((2, 2)))]).load_state_dict(optimizer.state_dict())


@pytest.mark.parametrize("config", CONFIGS)
def test_float32_params_stay_float32_and_follow_float64(config):
    ours_cls, _, kwargs = CONFIGS[config]
    runs = {}
    for dtype in (np.float64, np.float32):  # the same float32-rounded start and gradients
        params = make_params(np.float32)
        params = [(name, value.astype(dtype), grad.astype(dtype)) for name, value, grad in params]
        optimizer = ours_cls(params, **kwargs)
        grads = [{name: grad.astype(dtype) for name, grad in step.items()}
                 for step in gradient_stream(3, np.float32)]
        run(optimizer, params, grads, [0.01] * 3)
        runs[dtype] = params
    assert all(value.dtype == np.float32 for _, value, _ in runs[np.float32])
    assert all(a.dtype == np.float32 for bufs in optimizer.state.values() for a in bufs.values())
    assert_all_close({name: (value, expected) for (name, value, _), (_, expected, _)
                      in zip(runs[np.float32], runs[np.float64])}, "the float64 run", FLOAT32_RTOL)


def test_zero_grad_zeros_grad_buffers_in_place():
    params = make_params()
    grads = [grad for _, _, grad in params]
    for grad in grads:
        grad += 1.0
    SGD(params, lr=0.1).zero_grad()
    assert all(not grad.any() for grad in grads)


def test_decays_excludes_biases_norms_embeddings_and_cls_token():
    decayed = {name for name, value, _ in make_params() if decays(name, value)}
    assert decayed == DECAYED


def test_adamw_no_decay_callable_chooses_excluded_params():
    params = [("w", np.ones((2, 2)), np.zeros((2, 2))), ("v", np.ones((2, 2)), np.zeros((2, 2)))]
    AdamW(params, lr=0.1, weight_decay=0.5, no_decay=lambda name, value: name == "v").step()
    assert np.allclose(params[0][1], 0.95) and np.allclose(params[1][1], 1.0)


def test_clip_grad_norm_matches_torch():
    params = make_params()
    grads = gradient_stream(1)[0]
    tensors = []
    for name, value, grad in params:
        grad[...] = grads[name]
        tensors.append(torch.tensor(value, requires_grad=True))
        tensors[-1].grad = torch.tensor(grads[name])
    expected = torch.nn.utils.clip_grad_norm_(tensors, max_norm=1.5)
    total_norm = clip_grad_norm(params, max_norm=1.5)
    assert isinstance(total_norm, float)
    assert total_norm == pytest.approx(expected.item(), rel=1e-12)
    for (_, _, grad), t in zip(params, tensors):
        assert np.max(np.abs(grad - t.grad.numpy())) <= 1e-12


def test_clip_grad_norm_leaves_small_gradients_alone():
    grad = np.array([0.3, 0.4], dtype=np.float32)
    assert clip_grad_norm([("w", np.zeros(2, np.float32), grad)], max_norm=1.0) == pytest.approx(0.5)
    assert np.array_equal(grad, np.array([0.3, 0.4], dtype=np.float32))


@pytest.mark.parametrize("make, match", [
    (lambda p: SGD(p, lr=-0.1), "lr must be a finite number >= 0, got -0.1"),
    (lambda p: Adam(p, betas=(1.0, 0.999)), r"betas\[0\] must be in \[0, 1\), got 1.0"),
    (lambda p: AdamW(p, betas=(0.9, -0.1)), r"betas\[1\] must be in \[0, 1\)"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov=True needs a momentum > 0"),
    (lambda p: Adam(p, weight_decay=-1.0), "weight_decay must be a finite number >= 0"),
    (lambda p: SGD([], lr=0.1), "empty parameter list"),
])
def test_optimizers_reject_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(make_params())


def test_lr_setter_rejects_negative_values():
    optimizer = SGD(make_params(), lr=0.1)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        optimizer.lr = -1.0


def test_optimizer_asks_for_parameters_when_given_a_model():
    with pytest.raises(TypeError, match=r"pass model.parameters\(\)"):
        AdamW(Linear(3, 2))
