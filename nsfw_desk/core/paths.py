"""Paths in records that machines read: readable text, plus the exact bytes when needed.

A file name need not be valid UTF-8 (POSIX names are bytes). Shown as text, the byte 0xE9
becomes `\\xe9`, and then b"x\\xe9.jpg" and the valid name "x\\\\xe9.jpg" read the same. So
every record (scan JSONL, export metadata, labels.csv, whatever comes next) keeps `path` for
people and adds `path_base64`, the standard base64 of `os.fsencode(path)`, whenever the
name is not valid UTF-8. A consumer takes `path_base64` when present, else `path`:
`jq -r '.path_base64 // (.path | @base64)'` gives the base64 of the exact bytes either way.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

BASE64_SUFFIX = "_base64"

PathLike = Path | str | bytes


def path_bytes(path: PathLike) -> bytes:
    """The exact bytes the operating system knows the path by."""
    return os.fsencode(path)


def display_path(path: PathLike) -> str:
    """The path as text for people: bytes that are not UTF-8 (and NUL) shown as `\\xNN`.

    Never holds a surrogate or a NUL, so it stores and encodes anywhere, but it is not
    unique: pair it with the bytes wherever a program must find the file again.
    """
    return _text(path_bytes(path))


def display_text(text: str) -> str:
    """A message as text for people: a path in it that Python decoded from bytes that are
    not UTF-8 (`os.fsdecode`: surrogate escapes such as `\\udcff`) shown as `display_path`
    shows it (`\\xff`). For messages built around paths by code that is not ours
    (safetensors, json), and by ours with a plain f-string."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no byte decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _text(raw)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def is_lossless_text(path: PathLike) -> bool:
    """Whether the readable text alone gives the path back (valid UTF-8, no NUL)."""
    raw = path_bytes(path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in raw


def path_fields(path: PathLike | None, name: str = "path") -> dict[str, str | None]:
    """`{name: text}` plus `{name + "_base64": exact bytes}` when the text would lose them.

    The one place that decides what a machine-readable record holds for a path.
    """
    if path is None:
        return {name: None}
    raw = path_bytes(path)
    if is_lossless_text(raw):
        return {name: raw.decode("utf-8")}
    return {name: _text(raw), name + BASE64_SUFFIX: base64.b64encode(raw).decode("ascii")}


def bytes_from_fields(record: dict, name: str = "path") -> bytes | None:
    """The exact path bytes back from a record written with `path_fields` (for consumers)."""
    encoded = record.get(name + BASE64_SUFFIX)
    if encoded:
        return base64.b64decode(encoded, validate=True)
    text = record.get(name)
    return None if text is None or text == "" else text.encode("utf-8")


def absolute_folder(path: PathLike) -> Path:
    """`path` as scans store the folder: resolved, symbolic links and `..` included, as the
    desk opens folders and `label` finds files.

    A library outlives the working folder it was filled from, so no stored path is relative;
    and a folder reached through a link (~/Pictures on another disk) must be the same rows
    whether the command line scanned it or the desk opened it.
    """
    return Path(os.fsdecode(path)).resolve()
