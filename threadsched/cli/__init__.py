"""The ``threadsched`` command line (console script ``threadsched = threadsched.cli:main``, and
``python -m threadsched``): parsing and dispatch in ``commands``, ``mixed-demo`` in ``demo``, ``bench`` in
``bench``. ``import threadsched`` does not import this package."""

from __future__ import annotations

from threadsched.cli.commands import main

__all__ = ["main"]
