"""Run one loader on one file with at most 1 GiB more address space than the imports took.

    python -m tests.memory_limit_run LOADER PATH

Used by test_robustness_memory.py. Prints ``refused: <message>`` and exits 0 when the
loader refuses the file with a ValueError; any other outcome (a MemoryError once the
limit is hit, say) ends with a traceback and a non-zero exit status.
"""
import resource
import sys

import numpy as np

from cs_vit.data import as_dataset, load_cifar10, load_image_folder, read_idx
from cs_vit.io import load_npz

LIMIT = 2**30
LOADERS = {
    "idx": lambda path: read_idx(path, 2051),
    "cifar10": load_cifar10,
    "image_folder": load_image_folder,
    "npz": load_npz,
    "labels": lambda path: as_dataset((np.zeros((1, 1, 8, 8), np.uint8), np.load(path))),
}


def address_space():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def main():
    loader, path = sys.argv[1:]
    resource.setrlimit(resource.RLIMIT_AS, (address_space() + LIMIT, resource.RLIM_INFINITY))
    try:
        LOADERS[loader](path)
    except ValueError as err:
        print(f"refused: {err}")
        return 0
    print("loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
