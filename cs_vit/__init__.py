"""cs_vit: Vision Transformers from scratch in NumPy/CuPy."""
import importlib.util

from cs_vit import backend
from cs_vit.gradient_check import rel_error

if importlib.util.find_spec("cs_vit.fast") is not None:
    import cs_vit.fast  # noqa: F401  the instructor's fast tier registers itself (absent for students)

__version__ = "0.1.0"
__all__ = ["backend", "rel_error", "__version__"]
