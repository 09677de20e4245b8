"""Sizes and counts for people: one unit family for the whole app, decimal (kB, MB, GB),
and "1 error" / "2 errors" rather than "1 errors".

Decimal because that is what disks, file managers and download pages show; one helper so a
size in the detail pane, an export summary and a full-disk message read the same.
"""

from __future__ import annotations

_UNITS = ("bytes", "kB", "MB", "GB", "TB")


def format_size(n: float | None) -> str:
    """`1234567` → `1.2 MB`; `999` → `999 bytes`; None → `unknown`."""
    if n is None:
        return "unknown"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            break
        value /= 1000
    if unit == "bytes":
        return f"{int(value):,} bytes"
    return f"{value:,.1f} {unit}"


def format_rate(bytes_per_s: float) -> str:
    """`55e6` → `55.0 MB/s`."""
    return f"{format_size(bytes_per_s)}/s"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`count(1, "file")` → `1 file`; `count(1200, "file")` → `1,200 files`."""
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"
