"""How much memory a file or a flag may make cs_vit allocate, checked before it allocates.

A file can declare sizes it does not hold: an IDX header can announce 2**40
images, a 100 KB PNG can announce 40,000 x 40,000 pixels, a gzip stream or a
deflated ``.npz`` member can inflate a thousandfold. Every loader checks such a
size against this ceiling before it allocates anything from it:

- What a file declares must be there. An uncompressed array holds exactly the
  bytes its header declares; a compressed one (gzip, a deflated ``.npz`` member,
  a PNG or JPEG image) may unpack to at most ``INFLATION`` times its size on
  disk, or ``FLOOR`` bytes, whichever is more.
- A size that only a flag or argument asks for (``image_size``, the model's
  dimensions) must fit in this machine's memory (:func:`memory_ceiling`).
- A label is a class index below ``MAX_CLASSES``, checked before anything
  (a list of class names, say) is built from it.

So no input file under 1 MB makes a loader allocate more than a few hundred MB.
"""
from __future__ import annotations

import os

try:
    import resource
except ImportError:  # Windows: no ulimit
    resource = None

INFLATION = 32
FLOOR = 64 * 2**20
MAX_CLASSES = 1_000_000


def _megabytes(nbytes):
    return f"{nbytes / 2**20:,.1f} MB"


def check_inflation(nbytes, stored_bytes, what, fix):
    """A ValueError unless ``nbytes`` unpacked from ``stored_bytes`` on disk is plausible.

    ``what`` names the data ("data_batch_1 declares 2,000 images"), ``fix`` what to do.
    """
    allowed = max(FLOOR, INFLATION * stored_bytes)
    if nbytes > allowed:
        raise ValueError(
            f"{what}, which would take {_megabytes(nbytes)} of memory from "
            f"{_megabytes(stored_bytes)} on disk; cs_vit unpacks at most {INFLATION} times what is stored (or "
            f"{_megabytes(FLOOR)}), so the data is corrupt or crafted; {fix}")


def memory_ceiling():
    """Bytes this process may hope to allocate: physical memory, or ``ulimit -v`` if lower."""
    ceiling = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if resource is not None:
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            ceiling = min(ceiling, soft)
    return ceiling


def check_memory(nbytes, what, fix):
    """A ValueError unless ``nbytes`` fits under :func:`memory_ceiling`."""
    ceiling = memory_ceiling()
    if nbytes > ceiling:
        raise ValueError(f"{what} would take {_megabytes(nbytes)} of memory, more than this "
                         f"machine has ({_megabytes(ceiling)}); {fix}")
