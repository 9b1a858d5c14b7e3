"""cs_vit: Vision Transformers from scratch in NumPy/CuPy."""
from cs_vit import backend
from cs_vit.allocator import keep_freed_memory
from cs_vit.gradient_check import rel_error

keep_freed_memory()

__version__ = "0.1.0"
__all__ = ["backend", "rel_error", "__version__"]
