"""The output directory: what the runs in it own (the manifest), and where a recipe's ``[run] output`` points.

A run deletes only what a run wrote. ``OUT/threadsched-manifest.json`` lists, relative to ``OUT``, every file
the runs into ``OUT`` wrote. A run adds the files it is going to write to the list *before* writing them, so a
run killed halfway leaves nothing unlisted behind. The rules (``OutputDirectory``):

* A directory that does not exist yet, or is empty, takes a run. So does a directory with a manifest: it
  belongs to a run. Any other directory is refused with ``OutputDirError`` (exit 2), which names the
  directory and a few of its files, unless ``force`` is set.
* A fresh run deletes the files the manifest lists, and nothing else. A resumed run deletes nothing (only
  leftover ``.NAME.XXXX.tmp`` files of interrupted atomic writes of listed names).
* A listed name is used only if it is a name a run writes (``OWNABLE``), so a manifest from elsewhere cannot
  point at ``../x``. It is also used only if its directory resolves inside ``OUT``: a ``row_groups`` symlink
  that leads out of ``OUT`` is refused, and nothing is ever written or deleted through it. A file that is
  itself a symlink out of ``OUT`` is refused too, except that a fresh run deletes the link (never its target).
* A file the manifest does not list, at a name the run is about to write, belongs to someone else. The run
  refuses it unless ``force`` is set. With ``force`` the run replaces it, because it writes that name either
  way, and leaves every other file alone. A manifest that is not valid counts as no manifest under
  ``force``.

``resolve_output`` says where a recipe's ``[run] output`` points. A relative path is taken from the recipe
file's directory, or from the working directory for a built-in recipe. The parser already refuses an
absolute path and one that climbs with ``..``. Once symlinks are resolved, the output may still not be the
recipe's own directory, nor one above it, nor a directory above the working directory. ``--out`` overrides
``[run] output`` and is taken as given.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterable
from pathlib import Path

from threadsched.engine.recipe import RecipeError
from threadsched.engine.runner.output import atomic_write

__all__ = ["MANIFEST", "OWNABLE", "OutputDirError", "OutputDirectory", "record_files", "resolve_output"]

MANIFEST = "threadsched-manifest.json"
_FORMAT = "threadsched.output/1"
#: Every name a run (or ``threadsched report``) writes in its output directory; a manifest lists no other.
OWNABLE = re.compile(
    r"(?:dataset\.jsonl|run\.json|run_state\.json|capacity_plan\.json|report\.md|timeline\.png"
    r"|events\.jsonl(?:\.[1-9][0-9]*)?|\.__events\.jsonl\.lock|row_groups/rg-[0-9]{5,}\.jsonl)"
)
_SUBDIRS = ("row_groups",)  # the only directory a run writes below OUT
_TEMP = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp")  # atomic_write's temp file of NAME
_SHOWN = 3  # files named in a refusal


class OutputDirError(RecipeError):
    """An output directory a run may not use as asked (one line naming the directory; the CLI exits 2)."""

    def __init__(self, directory: Path, message: str) -> None:
        super().__init__("", message, str(directory))


def _listing(names: Collection[str]) -> str:
    shown = ", ".join(sorted(names)[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown}, ... ({len(names)} in all)"


def _read_manifest(root: Path) -> frozenset[str] | None:
    """The names the manifest lists; None without one; ``OutputDirError`` for one threadsched did not write."""
    path = root / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputDirError(root, f"cannot read {MANIFEST}: {exc.strerror or exc}") from None
    try:
        document = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise OutputDirError(root, f"{MANIFEST} is not a threadsched output manifest ({exc})") from None
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(document, dict) or document.get("format") != _FORMAT or not isinstance(files, list):
        raise OutputDirError(root, f'{MANIFEST} is not a threadsched output manifest (no "format": "{_FORMAT}" with "files")')
    for name in files:
        if not isinstance(name, str) or not OWNABLE.fullmatch(name):
            raise OutputDirError(root, f"{MANIFEST} lists {name!r}, which is not a file a run writes; refusing to use it")
    return frozenset(files)


def _write_manifest(root: Path, names: Collection[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    document = {"format": _FORMAT, "files": sorted(names)}
    atomic_write(root / MANIFEST, (json.dumps(document, indent=0) + "\n").encode("utf-8"))


class OutputDirectory:
    """One run's view of its output directory (see the module docstring for the rules)."""

    def __init__(self, root: Path, owned: frozenset[str], existing: frozenset[str], force: bool) -> None:
        self.root = root
        self.owned = owned  # what the manifest lists
        self._existing = existing  # what is on disk, OUT-relative (row_groups/ entries included)
        self._force = force
        self._real_root = root.resolve()
        self._parents: dict[Path, Path] = {}

    @classmethod
    def open(cls, root: Path, *, force: bool) -> OutputDirectory:
        """Read ``root``'s manifest; refuse a non-empty directory without one unless ``force``."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise OutputDirError(root, "the output path exists and is not a directory")
        try:
            owned = _read_manifest(root)
        except OutputDirError:
            if not force:
                raise
            owned = None
        existing = cls._scan(root)
        top = {name for name in existing if "/" not in name and name != MANIFEST}
        if owned is None and top and not force:
            hint = " (an output of a threadsched without output manifests? --force reuses it)" if "run_state.json" in top else ""
            raise OutputDirError(
                root,
                f"refusing to write into a directory that holds files no run wrote ({_listing(top)}){hint}; "
                "choose another output directory, or pass --force to write there anyway (a forced run replaces "
                "the files with the names it writes and leaves every other file alone)",
            )
        return cls(root, owned or frozenset(), existing, force)

    @staticmethod
    def _scan(root: Path) -> frozenset[str]:
        found: set[str] = set()
        for prefix, directory in (("", root), *((f"{sub}/", root / sub) for sub in _SUBDIRS)):
            try:
                found.update(prefix + name for name in os.listdir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
        return frozenset(found)

    def _contains(self, real: Path) -> bool:
        return real == self._real_root or self._real_root in real.parents

    def _inside(self, name: str) -> Path:
        """``OUT/name``, once its directory is known to resolve inside ``OUT`` (no symlink escape)."""
        path = self.root / name
        parent = self._parents.get(path.parent)
        if parent is None:
            parent = self._parents[path.parent] = path.parent.resolve()
        if not self._contains(parent):
            raise OutputDirError(
                self.root, f"{name}: {path.parent} leads out of the output directory (to {parent}); refusing to use it"
            )
        return path

    def _foreign(self, names: Iterable[str]) -> list[str]:
        """Files on disk at ``names`` that no manifest lists: someone else's."""
        return sorted(name for name in names if name in self._existing and name not in self.owned)

    def _take(self, names: frozenset[str]) -> list[str]:
        """Check ``names`` (the files this run writes) before anything is touched; the foreign ones among them."""
        for name in sorted(names):  # the first offender named is always the same
            if not OWNABLE.fullmatch(name):
                raise ValueError(f"{name!r} is not a name a run writes (OWNABLE)")
            self._inside(name)
        foreign = self._foreign(names)
        if foreign and not self._force:
            raise OutputDirError(
                self.root,
                f"refusing to overwrite files no run wrote: {_listing(foreign)}; move them away, or pass --force to replace them",
            )
        return foreign

    def _write_manifest(self, names: Collection[str]) -> None:
        _write_manifest(self.root, names)
        self.owned = frozenset(names)

    def _unlink(self, name: str) -> None:
        path = self._inside(name)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            raise OutputDirError(self.root, f"{name} is a directory, not a file a run wrote; refusing to delete it") from None

    def _remove_temp_files(self, owned: frozenset[str]) -> None:
        for entry in self._existing:
            directory, _, base = entry.rpartition("/")
            match = _TEMP.fullmatch(base)
            if match and (f"{directory}/" if directory else "") + match["name"] in owned:
                self._inside(entry).unlink(missing_ok=True)

    def fresh(self, names: Collection[str]) -> None:
        """A fresh run: delete what the manifest lists (and, forced, foreign files at ``names``); own ``names``."""
        wanted = frozenset(names)
        doomed = self.owned | frozenset(self._take(wanted))
        for name in sorted(doomed):
            self._inside(name)  # every check before the first deletion
        self._write_manifest(self.owned | wanted)  # a kill while deleting leaves every file still listed
        for name in sorted(doomed):
            self._unlink(name)
        self._remove_temp_files(doomed | wanted)
        self._write_manifest(wanted)

    def claim(self, names: Collection[str]) -> None:
        """A resumed run: keep what the manifest lists and add ``names``, deleting nothing but temp files."""
        wanted = frozenset(names)
        self._take(wanted)
        for name in sorted(wanted & self._existing):  # a fresh run deletes these first; a resumed one writes to them
            path = self.root / name
            if path.is_symlink() and not self._contains(path.resolve()):
                raise OutputDirError(
                    self.root, f"{name} is a symlink out of the output directory (to {path.resolve()}); refusing to use it"
                )
        owned = self.owned | wanted
        self._write_manifest(owned)
        self._remove_temp_files(owned)


def record_files(root: Path, names: Iterable[str]) -> None:
    """Add files just written into a run's directory (``threadsched report``) to its manifest, if it has one."""
    try:
        owned = _read_manifest(Path(root))
    except OutputDirError:
        return
    if owned is not None:
        _write_manifest(Path(root), owned | {name for name in names if OWNABLE.fullmatch(name)})


def resolve_output(output: str, recipe_file: Path | None, *, cwd: Path | None = None) -> Path:
    """The directory ``[run] output`` names, for a recipe read from ``recipe_file`` (None: a built-in recipe).

    Relative to the recipe file's directory (the working directory for a built-in recipe). An output that
    resolves to the recipe's own directory or one above it, or to a directory above the working directory,
    is a ``RecipeError`` on ``run.output``."""
    here = Path.cwd() if cwd is None else cwd
    base = here if recipe_file is None else Path(recipe_file).parent
    path = base / output
    real = path.resolve()
    location = "<built-in recipe>" if recipe_file is None else str(recipe_file)
    if recipe_file is not None:
        recipe_dir = base.resolve()
        if real == recipe_dir or real in recipe_dir.parents:
            raise RecipeError(
                "run.output",
                f"{output!r} resolves to {real}, the recipe's own directory or one above it; name a directory of its "
                "own, or pass --out",
                location,
            )
    if real in here.resolve().parents:
        raise RecipeError(
            "run.output", f"{output!r} resolves to {real}, a directory above the working directory; pass --out", location
        )
    return path
