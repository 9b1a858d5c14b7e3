"""Fetch CIFAR-10, MNIST and Fashion-MNIST into datasets/, each file checked by MD5.

    python -m cs_vit.data.get_datasets                 # all three
    python -m cs_vit.data.get_datasets cifar10 --root /data
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cs_vit.data.registry import DOWNLOADERS, default_root


def main(argv=None):
    parser = argparse.ArgumentParser(prog="get_datasets", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"datasets to fetch ({', '.join(DOWNLOADERS)}); all when none given")
    parser.add_argument("--root", type=Path, default=None,
                        help="folder to put them in, one sub-folder each (default: datasets/ "
                        "in a source checkout, else ~/.cache/cs_vit)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in DOWNLOADERS]
    if unknown:
        parser.error(f"unknown dataset {', '.join(unknown)}; choose from {', '.join(DOWNLOADERS)}")
    for name in args.names or list(DOWNLOADERS):
        target = args.root / name if args.root is not None else default_root(name)
        try:
            train, test = DOWNLOADERS[name](target, download=True)
        except (OSError, ValueError) as err:
            print(f"get_datasets: {name}: {err}", file=sys.stderr)
            return 1
        print(f"{name}: {len(train)} train / {len(test)} test images in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
