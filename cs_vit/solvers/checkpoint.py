"""Training checkpoints: one ``.npz`` holding everything needed to resume exactly.

Layout (all plain arrays, no pickle):
  model/<param>   current parameters        best/<param>  best parameters so far
  optim/<key>     optimizer state_dict      __meta__      JSON: counters, results, config,
                                                          settings, RNG states
"""
from __future__ import annotations

import json
import os

import numpy

from cs_vit import backend
from cs_vit.io import atomic_savez, load_npz

CHECKPOINT_NAME = "checkpoint.npz"
META_KEY = "__meta__"
META_FIELDS = ("epoch", "step", "results", "num_epochs", "settings", "model_config", "rng_state")


def checkpoint_path(folder):
    return os.path.join(os.fspath(folder), CHECKPOINT_NAME)


def save_checkpoint(path, model_state, best_state, optim_state, meta):
    """Write one checkpoint atomically; ``meta`` must be JSON-serialisable."""
    arrays = {f"model/{k}": v for k, v in model_state.items()}
    arrays.update({f"best/{k}": v for k, v in best_state.items()})
    arrays.update({f"optim/{k}": numpy.asarray(v) for k, v in optim_state.items()})
    arrays[META_KEY] = json.dumps(meta, default=str)
    atomic_savez(path, arrays)


def _section(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def load_checkpoint(path):
    """(model_state, best_state, optim_state, meta) from a file written by save_checkpoint."""
    arrays = load_npz(path)
    if META_KEY not in arrays:
        raise ValueError(f"{path} is not a cs_vit training checkpoint (no {META_KEY} entry)")
    optim_state = {k: (v.item() if v.ndim == 0 else v) for k, v in _section(arrays, "optim/").items()}
    meta = json.loads(str(arrays[META_KEY]))
    missing = [field for field in META_FIELDS if field not in meta]
    if missing:
        raise ValueError(f"{path} lacks {missing} in its {META_KEY} entry; it was written by "
                         "another version of cs_vit, so start a new run")
    return _section(arrays, "model/"), _section(arrays, "best/"), optim_state, meta


def rng_state(data_rng):
    """The states of the backend's generator and of ``data_rng``, JSON-ready.

    The backend's is None on CuPy, whose generator state cannot be saved.
    """
    saved = backend.get_rng_state() if backend.name() == "numpy" else None
    return {"backend": saved, "data": data_rng.bit_generator.state}


def restore_rng(state, fallback_seed):
    """Continue from a :func:`rng_state`; returns the restored data generator.

    The backend's generator is reseeded with ``fallback_seed`` when the checkpoint
    holds no state for it or CuPy is active.
    """
    if state["backend"] is not None and backend.name() == "numpy":
        backend.set_rng_state(state["backend"])
    else:
        backend.seed(fallback_seed)
    data_rng = numpy.random.default_rng()
    data_rng.bit_generator.state = state["data"]
    return data_rng


def check_epochs(path, epochs_done, num_epochs):
    """Refuse to resume a run that has already trained more epochs than ``num_epochs``.

    Asking for more epochs than were done extends the run (its learning-rate
    schedule is stretched to the new length); asking for fewer cannot be honoured.
    """
    if num_epochs < epochs_done:
        raise ValueError(f"cannot resume from {path} with {num_epochs} epochs: it was written "
                         f"at the end of epoch {epochs_done}; ask for at least {epochs_done} "
                         "epochs, or start a new run in another folder")


def check_resumable(path, meta, model_config, settings):
    """Refuse a checkpoint written with another model config or other training settings."""
    for what, current in (("model_config", model_config), ("settings", settings)):
        saved, current = meta[what], json.loads(json.dumps(current, default=str))
        differences = [f"{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}"
                       for key in sorted(set(saved) | set(current))
                       if saved.get(key) != current.get(key)]
        if differences:
            kind = "model config" if what == "model_config" else "training settings"
            raise ValueError(
                f"cannot resume from {path}: it was written with different {kind} "
                f"({'; '.join(differences)}); resume with the same {kind} or start a new run "
                "in another folder")
