"""Training checkpoints: one ``.npz`` holding everything needed to resume exactly.

Layout (all plain arrays, no pickle):
  model/<param>   current parameters        best/<param>  best parameters so far
  optim/<key>     optimizer state_dict      __meta__      JSON: counters, results, config
"""
from __future__ import annotations

import json
import os

import numpy

from cs_vit.io import atomic_savez, load_npz

CHECKPOINT_NAME = "checkpoint.npz"
META_KEY = "__meta__"


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
    return _section(arrays, "model/"), _section(arrays, "best/"), optim_state, meta
