"""The grid's per-row columns over `ResultColumns`, decoded only where a row is looked at.

`ResultsModel` keeps paths, names, hashes and errors as Python lists and looks rows up in two
dicts. For a million stored rows those cost seconds and hundreds of megabytes on the GUI
thread, so `ResultsModel.reset_columns` puts these stand-ins in their place: each answers the
few list and dict operations the model uses (index, append, iterate; get, contains), reading
the blob and arrays the read thread built. Rows a scan appends later live in small Python
lists beside them. No Qt here.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nsfw_desk.core.result_columns import HASH_WIDTH, ResultColumns


class PathColumn:
    """Row → Path, decoded from the blob on each look (a tile, a tooltip, a decision)."""

    def __init__(self, columns: ResultColumns) -> None:
        self.columns = columns
        self._base = len(columns)
        self._extra: list[Path] = []

    def __len__(self) -> int:
        return self._base + len(self._extra)

    def __getitem__(self, row: int) -> Path:
        if row < 0:
            row += len(self)
        return self.columns.path(row) if row < self._base else self._extra[row - self._base]

    def __iter__(self) -> Iterator[Path]:
        for row in range(self._base):
            yield self.columns.path(row)
        yield from self._extra

    def append(self, path: Path) -> None:
        self._extra.append(path)

    def find(self, path: Path) -> int | None:
        """The stored row of `path` (bisecting the runs in path-byte order), or None."""
        raw = os.fsencode(path)
        for start, stop in self.columns.sorted_runs:
            at = bisect.bisect_left(range(start, stop), raw, key=self.columns.raw_path) + start
            if at < stop and self.columns.raw_path(at) == raw:
                return at
        return None


class NameColumn:
    """Row → file name, from the paths (appending a name is implied by appending a path)."""

    def __init__(self, paths: PathColumn) -> None:
        self._paths = paths

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, row: int) -> str:
        return self._paths[row].name

    def __iter__(self) -> Iterator[str]:
        return (path.name for path in self._paths)

    def append(self, name: str) -> None:  # the path appended beside it already names it
        pass


class HashColumn:
    """Row → content hash or None, over a fixed-width bytes array."""

    def __init__(self, hashes: np.ndarray) -> None:
        self.array = hashes  # handed over by the read thread: the grid's own from now on
        self._extra: list[str | None] = []
        self._lent = False  # `lend` gave the array to a read thread: copy before a change
        self.rows_of_hash: RowsOfHash | None = None  # set by RowsOfHash over this column

    def __len__(self) -> int:
        return len(self.array) + len(self._extra)

    def __getitem__(self, row: int) -> str | None:
        if row < 0:
            row += len(self)
        if row >= len(self.array):
            return self._extra[row - len(self.array)]
        digest = self.array[row]
        return digest.decode("ascii") if digest else None

    def __setitem__(self, row: int, digest: str | None) -> None:
        if row < len(self.array):
            if self._lent:  # a read thread may be reading it: change a copy
                self.array, self._lent = self.array.copy(), False
            self.array[row] = (digest or "").encode("ascii")
        else:
            self._extra[row - len(self.array)] = digest

    def __iter__(self) -> Iterator[str | None]:
        for digest in self.array.tolist():
            yield digest.decode("ascii") if digest else None
        yield from self._extra

    def append(self, digest: str | None) -> None:
        self._extra.append(digest)

    def lend(self) -> np.ndarray:
        """`as_bytes` for another thread to read: no copy now, the array is not changed in
        place while lent (a change copies it first)."""
        self._lent = True
        return self.as_bytes()

    def as_bytes(self) -> np.ndarray:
        """Every row's hash as "S64" (b"" for none), appended rows included."""
        if not self._extra:
            return self.array
        extra = np.array([d or "" for d in self._extra], dtype=f"S{HASH_WIDTH}")
        return np.concatenate([self.array, extra])


class ErrorColumn:
    """Row → error text or None; errors are few, so a dict of the rows that have one."""

    def __init__(self, errors: dict[int, str], rows: int) -> None:
        self.errors = dict(errors)
        self._rows = rows

    def __len__(self) -> int:
        return self._rows

    def __getitem__(self, row: int) -> str | None:
        return self.errors.get(row)

    def __setitem__(self, row: int, text: str | None) -> None:
        if text is None:
            self.errors.pop(row, None)
        else:
            self.errors[row] = text

    def __iter__(self) -> Iterator[str | None]:
        return (self.errors.get(row) for row in range(self._rows))

    def append(self, text: str | None) -> None:
        self[self._rows] = text
        self._rows += 1

    def mask(self) -> np.ndarray:
        has = np.zeros(self._rows, dtype=bool)
        has[list(self.errors)] = True
        return has


class RowOfPath(Mapping):
    """Path → row: stored rows by bisection, appended rows in a dict."""

    def __init__(self, paths: PathColumn) -> None:
        self._paths = paths
        self._extra: dict[Path, int] = {}

    def __getitem__(self, path: Path) -> int:
        row = self._extra.get(path)
        if row is None:
            row = self._paths.find(path)
        if row is None:
            raise KeyError(path)
        return row

    def __setitem__(self, path: Path, row: int) -> None:
        self._extra[path] = row

    def __iter__(self) -> Iterator[Path]:
        seen = set(self._extra)
        yield from (p for p in self._paths if p not in seen)
        yield from self._extra

    def __len__(self) -> int:
        return len(self._paths)


class RowsOfHash(Mapping):
    """Hash → the rows holding it, by binary search of the hashes sorted once (numpy).

    Rows whose hash changed after the sort are dropped by checking the current hash; rows
    given a hash since (`setdefault(h, []).append(row)`) are kept in a small dict."""

    def __init__(self, hashes: HashColumn, order: np.ndarray, ordered: np.ndarray) -> None:
        self._hashes = hashes
        self._order = order  # argsort of the hashes and the hashes in that order, made on
        self._sorted = ordered  # the read thread
        hashes.rows_of_hash = self
        self._added: dict[str, list[int]] = {}

    def _rows(self, digest: str) -> list[int]:
        key = digest.encode("ascii")
        low = int(np.searchsorted(self._sorted, key, "left"))
        high = int(np.searchsorted(self._sorted, key, "right"))
        rows = self._order[low:high].tolist() + self._added.get(digest, [])
        return [r for r in dict.fromkeys(rows) if self._hashes[r] == digest]

    def rows_for(self, digests: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(rows, which digest each row holds), for many digests in one numpy pass over
        the sorted hashes (rows appended since the sort included)."""
        keys = np.array(digests, dtype=f"S{HASH_WIDTH}")
        # Asked in sorted order the bisections stay in cache: 2 × 26 → 2 × 11 ms for a
        # library's 10,000 labels against a million rows.
        by = np.argsort(keys, kind="stable")
        low = np.empty(len(keys), dtype=np.int64)
        high = np.empty(len(keys), dtype=np.int64)
        low[by] = np.searchsorted(self._sorted, keys[by], "left")
        high[by] = np.searchsorted(self._sorted, keys[by], "right")
        counts = high - low
        which = np.repeat(np.arange(len(keys)), counts)
        starts = np.repeat(low - np.cumsum(counts) + counts, counts)
        rows = self._order[starts + np.arange(len(which))] if len(which) else which
        extra = [(r, i) for i, d in enumerate(digests) for r in self._added.get(d, ())]
        if extra:
            rows = np.concatenate([rows, [r for r, _ in extra]]).astype(np.int64)
            which = np.concatenate([which, [i for _, i in extra]]).astype(np.int64)
        current = self._hashes.as_bytes()[rows] if len(rows) else keys[:0]
        keep = current == keys[which] if len(rows) else np.zeros(0, dtype=bool)
        return rows[keep], which[keep]

    def __getitem__(self, digest: str) -> list[int]:
        rows = self._rows(digest) if digest else []
        if not rows:
            raise KeyError(digest)
        return rows

    def get(self, digest: Any, default: Any = None) -> Any:
        rows = self._rows(digest) if isinstance(digest, str) and digest else []
        return rows if rows else default

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and bool(digest) and bool(self._rows(digest))

    def setdefault(self, digest: str, default: list[int] | None = None) -> list[int]:
        return self._added.setdefault(digest, [])

    def present(self) -> set[str]:
        """Every hash some row holds now: the column's own values, one numpy pass (a key
        is in this mapping exactly when a row holds it, so no lookup per key)."""
        unique = np.unique(self._hashes.as_bytes())
        return {d.decode("ascii") for d in unique.tolist() if d}

    def __iter__(self) -> Iterator[str]:
        return iter(self.present())

    def __len__(self) -> int:
        return len(self.present())


def lookup(hashes: Any, mapping: Mapping[str, Any], default: Any, dtype: Any) -> np.ndarray:
    """Per row: `mapping[its hash]`, else `default`; over a HashColumn, each key of the
    mapping is found by bisection in the rows sorted by hash (no pass over every row)."""
    out = np.full(len(hashes), default, dtype=dtype)
    if not mapping:
        return out
    rows_of = getattr(hashes, "rows_of_hash", None)
    if rows_of is None:
        return np.array([mapping.get(h or "", default) for h in hashes], dtype=dtype)
    rows, which = rows_of.rows_for(list(mapping))
    out[rows] = np.array(list(mapping.values()), dtype=dtype)[which]
    return out
