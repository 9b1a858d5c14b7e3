# cs-vit: instructor-only (part of the grading runtime)
"""The sandboxed child: run one task's cases (or the training check) on the student's code.

    python -m cs_vit_grader.child SCRATCH

Reads ``SCRATCH/request.json`` and ``SCRATCH/inputs.npz``; writes
``SCRATCH/result.npz``: the outputs under ``"<case id>/<name>"`` and, under
``"__errors__"``, a JSON object {case id: what went wrong}. The student's code
runs in this process and may change anything in it, so nothing here decides a
score: the parent compares what this writes (if anything) with expected values
only the parent can read.
"""
from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path

import numpy as np

from . import cases as builtin
from .replay import Replayer

ERRORS = "__errors__"
MESSAGE_CHARS = 1500


def describe(err, files=()):
    """``Type: message (at FILE, line N, in FUNCTION)``, the place being the last frame in
    one of the task's ``files`` (else the last one in the cs_vit tree)."""
    try:
        text = f"{type(err).__name__}: {err}"
    except Exception:  # an exception whose str() fails is still reported
        text = type(err).__name__
    frames = [(f, "cs_vit/" + f.filename.replace("\\", "/").split("/cs_vit/")[-1])
              for f in traceback.extract_tb(err.__traceback__)
              if "/cs_vit/" in f.filename.replace("\\", "/")]
    frames = [pair for pair in frames if pair[1] in files] or frames
    if frames:
        frame, place = frames[-1]
        text += f" (at {place}, line {frame.lineno}, in {frame.name})"
    return text[:MESSAGE_CHARS]


def as_numbers(value):
    """``value`` as a float64 NumPy array; a TypeError for anything that is not numbers."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"returned a {type(value).__name__} of dtype {array.dtype}, "
                        "not an array of numbers")
    return array.astype(np.float64)


def run_cases(cases, arrays, files):
    """({"<id>/<output>": array}, {id: error}) for ``cases`` run on this tree's code."""
    results, errors = {}, {}
    try:
        from cs_vit import backend
        backend.set_default_dtype("float64")
    except BaseException as err:  # the tree does not even import: every case fails alike
        return results, {case["id"]: describe(err, files) for case in cases}
    for case in cases:
        prefix = case["id"] + "/"
        own = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        try:
            backend.seed(case["seed"])
            module = importlib.import_module(case["module"]) if case["module"] else builtin
            run = builtin.case_function(module, "run", case["kind"])
            outputs = run(own, Replayer(own, case["replay"]), **case["params"])
            results.update({prefix + name: as_numbers(v) for name, v in outputs.items()})
        except BaseException as err:  # SystemExit from the student's code fails this case only
            errors[case["id"]] = describe(err, files)
    return results, errors


def main(argv):
    scratch = Path(argv[0])
    request = json.loads((scratch / "request.json").read_text())
    with np.load(scratch / "inputs.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    sys.path.insert(0, str(scratch / "hidden"))
    if request["mode"] == "training":
        from .training import train
        results, errors = train(arrays, request["training"], request["files"])
    else:
        results, errors = run_cases(request["cases"], arrays, request["files"])
    results[ERRORS] = np.array(json.dumps(errors))
    with open(scratch / "result.npz", "wb") as f:
        np.savez(f, **results)


if __name__ == "__main__":
    main(sys.argv[1:])
