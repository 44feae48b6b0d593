"""Paths the user names, checked before any work starts; files nowait writes, private.

A shared basic: nothing here knows what the files hold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from nowait.errors import InputError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def check_output_file(path: Path, field: str) -> None:
    """`path` can be written as a file: not a folder, its folder exists and is writable.
    Raises `InputError` naming the flag, so nothing is queued for a result with nowhere to go."""
    if path.is_dir():
        raise InputError(f"{path} is a folder", field=field, expected="a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"folder {parent} does not exist", field=field, expected="a file path")
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        raise InputError(f"{target} is not writable", field=field)


def check_output_dir(path: Path, field: str) -> None:
    """`path` can be a folder nowait writes in: a folder, or missing with its nearest existing
    parent a writable folder (nowait creates it). Raises `InputError` naming the flag."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file", field=field, expected="a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{existing} is a file", field=field, expected="a folder path")
    if not os.access(existing, os.W_OK):
        raise InputError(f"{existing} is not writable", field=field)


def check_existing_dir(path: Path, field: str, what: str = "folder") -> None:
    """`path` is an existing folder: for commands that only read what is there, which must
    never create an empty one. Raises `InputError` ("no nowait home at X")."""
    if not path.exists():
        raise InputError(f"no {what} at {path}", field=field, expected="an existing folder")
    if not path.is_dir():
        raise InputError(f"{path} is a file", field=field, expected=f"the {what} folder")


def open_private_append(path: Path) -> TextIO:
    """Open `path` for appending; a new file is readable by its owner only (results hold
    model output: private by default). An existing file keeps the mode its owner chose."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    return os.fdopen(fd, "a", encoding="utf-8")


def make_private_dir(path: Path) -> None:
    """Create `path` (and its parents) if missing; a folder nowait creates is owner-only."""
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, mode=PRIVATE_DIR, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create folder {path}: {exc.strerror}") from None
    path.chmod(PRIVATE_DIR)  # mkdir's mode passes through the umask
