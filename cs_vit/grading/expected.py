# cs-vit: instructor-only (builds the autograder from the solution)
"""Build time: run every grading case on the solution; keep its inputs and outputs.

    python -m cs_vit.grading.expected OUT_DIR [HIDDEN_DIR]

:func:`cs_vit.grading.build.make_autograder` runs this in a subprocess whose
environment selects the solution tree and its reference tier (``CS_VIT_FAST=0``).
Every case runs in float64 from inputs drawn with a seed of its own; the
sub-layers a case replays are recorded on the way. Writes ``cases.json`` (the
case list, as the parent and the child read it), ``inputs.npz`` (what the child
gets) and ``expected.npz`` (what only the parent reads).
"""
from __future__ import annotations

import importlib.util
import json
import sys
import zlib
from pathlib import Path

import numpy as np

from cs_vit import backend
from cs_vit.grading.runtime import cases as builtin
from cs_vit.grading.tasks import task_order
from cs_vit.grading.runtime.cases import case_function
from cs_vit.grading.runtime.replay import Recorder

HIDDEN_POINTS = 1.0  # a hidden case without "points"


def load_hidden(folder):
    """[(module name, module)] of the hidden-test modules (``*.py``) in ``folder``."""
    modules = []
    for path in sorted(Path(folder).glob("*.py")):
        name = "hidden_" + path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not isinstance(getattr(module, "CASES", None), list):
            raise ValueError(f"{path}: a hidden-test module defines CASES, a list of cases "
                             "(dicts with task, name, kind and params)")
        modules.append((name, module))
    return modules


def all_cases(hidden_folder=None):
    """[(case id, case dict, module name or "", module)] of the built-in and hidden cases."""
    found = []
    for task in sorted({c["task"] for c in builtin.CASES}, key=task_order):
        own = [c for c in builtin.CASES if c["task"] == task]
        found += [(f"{task}.{i + 1}", c, "", builtin) for i, c in enumerate(own)]
    for name, module in load_hidden(hidden_folder) if hidden_folder else []:
        found += [(f"{name}.{i + 1}", dict(c, points=float(c.get("points", HIDDEN_POINTS))),
                   name, module) for i, c in enumerate(module.CASES)]
    return found


def run_case(case_id, case, module):
    """(inputs, outputs, replay description) of one case run on this tree's code."""
    params = json.loads(json.dumps(case["params"]))  # the child gets them through JSON too
    seed = zlib.crc32(case_id.encode())
    backend.seed(seed)
    rng = np.random.default_rng(seed)
    arrays = case_function(module, "inputs", case["kind"])(rng, **params)
    swap = Recorder(arrays, rng)
    outputs = case_function(module, "run", case["kind"])(arrays, swap, **params)
    outputs = {name: np.asarray(value, dtype=float) for name, value in outputs.items()}
    return arrays, outputs, swap.finish()


def main(argv):
    out, hidden = Path(argv[0]), (argv[1] if len(argv) > 1 else None)
    backend.set_default_dtype("float64")
    described, inputs, expected = [], {}, {}
    for case_id, case, module_name, module in all_cases(hidden):
        try:
            arrays, outputs, replay = run_case(case_id, case, module)
        except Exception as err:
            raise SystemExit(f"the solution fails grading case {case_id} ({case['name']}): "
                             f"{type(err).__name__}: {err}") from err
        inputs.update({f"{case_id}/{k}": v for k, v in arrays.items()})
        expected.update({f"{case_id}/{k}": v for k, v in outputs.items()})
        described.append(dict(case, id=case_id, module=module_name, hidden=bool(module_name),
                              outputs=list(outputs), replay=replay,
                              seed=zlib.crc32(case_id.encode())))
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "inputs.npz", **inputs)
    np.savez(out / "expected.npz", **expected)
    (out / "cases.json").write_text(json.dumps(described, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
