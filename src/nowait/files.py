"""Paths the user names, checked before any work starts; files nowait writes, private.

A shared basic: nothing here knows what the files hold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TextIO

from nowait.errors import InputError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def path_kind(path: Path, field: str | None) -> Literal["missing", "folder", "file"]:
    """What `path` names; a path the system refuses to look at (a name too long, a loop of
    links, no permission to search a folder) raises `InputError` naming it and the flag."""
    try:
        if path.is_dir():
            return "folder"
        return "file" if path.exists() else "missing"
    except OSError as exc:
        raise InputError(f"cannot use this path: {exc.strerror}", file=path, field=field) from None


def check_output_file(path: Path, field: str) -> None:
    """`path` can be written as a file: not a folder, its folder exists and is writable.
    Raises `InputError` naming the flag, so nothing is queued for a result with nowhere to go."""
    kind = path_kind(path, field)
    if kind == "folder":
        raise InputError(f"{path} is a folder", field=field, expected="a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if path_kind(parent, field) != "folder":
        raise InputError(f"folder {parent} does not exist", field=field, expected="a file path")
    target = path if kind == "file" else parent
    if not os.access(target, os.W_OK):
        raise InputError(f"{target} is not writable", field=field)


def check_output_dir(path: Path, field: str) -> None:
    """`path` can be a folder nowait writes in: a folder, or missing with its nearest existing
    parent a writable folder (nowait creates it). Raises `InputError` naming the flag."""
    if path_kind(path, field) == "file":
        raise InputError(f"{path} is a file", field=field, expected="a folder")
    existing = path
    while path_kind(existing, field) == "missing":
        existing = existing.parent
    if path_kind(existing, field) != "folder":
        raise InputError(f"{existing} is a file", field=field, expected="a folder path")
    if not os.access(existing, os.W_OK):
        raise InputError(f"{existing} is not writable", field=field)


def check_existing_dir(path: Path, field: str, what: str = "folder") -> None:
    """`path` is an existing folder: for commands that only read what is there, which must
    never create an empty one. Raises `InputError` ("no nowait home at X")."""
    kind = path_kind(path, field)
    if kind == "missing":
        raise InputError(f"no {what} at {path}", field=field, expected="an existing folder")
    if kind == "file":
        raise InputError(f"{path} is a file", field=field, expected=f"the {what} folder")


def open_private_append(path: Path) -> TextIO:
    """Open `path` for appending; a new file is readable by its owner only (results hold
    model output: private by default). An existing file keeps the mode its owner chose."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    return os.fdopen(fd, "a", encoding="utf-8")


def open_sole_writer(path: Path) -> TextIO:
    """`open_private_append`, holding an exclusive `flock` on the file while it is open: two
    processes appending to one results file (two workers given the same --out) would
    interleave and redeliver each other's keys. The kernel drops the lock when the process
    dies, so a killed worker's file is free at once."""
    import fcntl

    file = open_private_append(path)
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        raise InputError(
            f"{path} is being written by another process (a second worker with the same"
            " --out?): give each worker a file of its own"
        ) from None
    return file


def make_private_dir(path: Path) -> None:
    """Create `path` (and its parents) if missing; a folder nowait creates is owner-only."""
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, mode=PRIVATE_DIR, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create folder {path}: {exc.strerror}") from None
    path.chmod(PRIVATE_DIR)  # mkdir's mode passes through the umask
