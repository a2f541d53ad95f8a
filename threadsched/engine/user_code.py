"""Loading user functions named ``module:callable`` by recipes (python columns and processors)."""

from __future__ import annotations

import importlib
from collections.abc import Callable


class UserCodeError(ValueError):
    """A ``module:callable`` reference that cannot be loaded; the message says which part failed."""


def import_callable(reference: str) -> Callable[..., object]:
    """Import ``module.path:attr.path`` and return it if callable; nothing is evaluated from text."""
    module_name, sep, attribute_path = reference.partition(":")
    if not sep or not module_name or not attribute_path:
        raise UserCodeError(f"{reference!r}: expected 'module:callable'")
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or anything the user's module raises while importing
        raise UserCodeError(f"{reference!r}: import of {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    for attribute in attribute_path.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise UserCodeError(f"{reference!r}: no attribute {attribute!r} in {module_name!r}") from None
    if not callable(target):
        raise UserCodeError(f"{reference!r}: {attribute_path!r} is not callable (got {type(target).__name__})")
    return target
