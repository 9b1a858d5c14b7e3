"""Two tiers of code: the textbook layers you read and write, and faster ones in their place.

Every layer in ``cs_vit.layers`` is the textbook formula written with whole
arrays. A function or method marked ``@replaceable`` runs exactly that code,
unless a faster implementation of the same computation has been registered for
it with :func:`replace`. The instructor's fast tier (``cs_vit.fast``, which the
student release does not include) registers its versions when it is imported,
and each of them is tested to give the same results as the code it replaces.
Without a registered replacement the decorator changes nothing.
"""
from __future__ import annotations

import functools

_replacements = {}


def replaceable(function):
    """Decorator: call a registered replacement of ``function`` instead, if there is one.

    ``function`` stays reachable as the wrapper's ``reference`` attribute.
    """
    key = f"{function.__module__}.{function.__qualname__}"

    @functools.wraps(function)
    def dispatch(*args, **kwargs):
        replacement = _replacements.get(key)
        if replacement is None:
            return function(*args, **kwargs)
        return replacement(*args, **kwargs)

    dispatch.reference = function
    dispatch.replaceable_key = key
    return dispatch


def replace(target, replacement):
    """Run ``replacement`` wherever ``target`` (a ``@replaceable`` function) is called."""
    key = getattr(target, "replaceable_key", None)
    if key is None:
        raise TypeError(f"{target!r} is not marked @replaceable, so nothing can replace it")
    _replacements[key] = replacement


def restore(target):
    """Remove the replacement of ``target``, if any: it runs its own code again."""
    _replacements.pop(target.replaceable_key, None)


def restore_all():
    """Remove every replacement: from now on each ``@replaceable`` runs its own code."""
    _replacements.clear()


def any_replaced():
    """Whether any replacement is registered (the fast tier is on)."""
    return bool(_replacements)


def replaced(target):
    """Whether a replacement of ``target`` is registered."""
    return target.replaceable_key in _replacements
