"""`nsfw-desk import RESULTS_DIR`: a cluster-scan's results into the library, without Ray.

Rows go in by content hash, as a scan's would: file rows (path, size, mtime, hash), each
model's score with its probabilities and embedding, the PDQ hash, the thumbnail, and the
errors. The models are registered from the runs' run.json. `--map-prefix FROM=TO` turns the
paths the cluster saw into the paths this machine sees (byte for byte, so names that are not
UTF-8 map too). Nothing that is already so is written again (`Library.import_results`), so
importing twice changes nothing. Each run's source folder gets a history row, so the desk
shows the imported scores as soon as the folder opens, before any model loads.

Results of a remote source name files by URI (`s3://bucket/prefix/a.jpg`), which no local
path can hold: importing them needs a `--map-prefix` from that URI to where this machine sees
the files (a mount, a synced copy), and says so before it writes anything.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nsfw_desk.core import cluster_results as results
from nsfw_desk.core.cluster_source import is_uri
from nsfw_desk.core.images import FileError
from nsfw_desk.core.store import Library, ScoredFile

log = logging.getLogger(__name__)

CHUNK = 2000  # rows per transaction
MODEL_KEYS = ("id", "source", "architecture", "labels", "unsafe_labels")  # of run.json's models


@dataclass(frozen=True)
class PrefixMap:
    old: bytes
    new: bytes

    @classmethod
    def parse(cls, text: str) -> PrefixMap:
        """`FROM=TO` (the first `=` splits; the command line's bytes are kept exactly)."""
        old, sep, new = text.partition("=")
        if not sep or not old or not new:
            raise ValueError(f"--map-prefix wants FROM=TO (both non-empty), not {text!r}")
        return cls(os.fsencode(old), os.fsencode(new))

    def apply(self, raw: bytes) -> bytes | None:
        """`raw` under the new prefix, or None when `old` is not a whole-folder prefix of it:
        /data/img must not turn /data/images/x.jpg into TO/ages/x.jpg."""
        if self.old.endswith(b"/"):
            if not raw.startswith(self.old):
                return None
            new = self.new if self.new.endswith(b"/") else self.new + b"/"
            return new + raw[len(self.old) :]
        if raw != self.old and not raw.startswith(self.old + b"/"):
            return None
        return self.new + raw[len(self.old) :]


def map_path(raw: bytes, maps: Iterable[PrefixMap]) -> bytes:
    """`raw` with the first matching folder prefix replaced (bytes-exact); else unchanged."""
    for prefix in maps:
        mapped = prefix.apply(raw)
        if mapped is not None:
            return mapped
    return raw


@dataclass
class ImportSummary:
    rows: int = 0
    images: int = 0
    errors: int = 0
    models: list[str] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # result files that could not be read
    changed: dict[str, int] = field(
        default_factory=lambda: {
            "files": 0,
            "scores": 0,
            "errors": 0,
            "pdq": 0,
            "thumbnails": 0,
            "history": 0,
        }
    )

    @property
    def unchanged(self) -> bool:
        return not any(self.changed.values())


def _chunks(rows: Iterator[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_results(out: Path, library: Library, *, maps: Iterable[PrefixMap] = ()) -> ImportSummary:
    """Load every row of the cluster-scan results in `out` into `library`."""
    results.require_pyarrow()
    maps = list(maps)
    out = Path(out)
    records = results.run_records(out)
    if not records:
        raise results.ResultsError(
            f"{out} holds no cluster-scan results (no run-*/run.json); "
            "give the --out folder of nsfw-desk cluster-scan."
        )
    for record in records:
        root = _source(record)
        if root is not None and is_uri(os.fsdecode(map_path(root, maps))):
            raise results.ResultsError(
                f"{out} holds results of {os.fsdecode(root)}, which names files by URI; "
                f"give --map-prefix {os.fsdecode(root)}=FOLDER, the folder where this "
                "machine sees those files."
            )
    summary = ImportSummary()
    models: dict[str, dict] = {}
    for record in records:
        for model in record.get("models") or []:
            missing = [k for k in MODEL_KEYS if not isinstance(model, dict) or k not in model]
            if missing:
                raise results.ResultsError(
                    f"{out}: a run.json names a model without {', '.join(missing)}; "
                    "give the --out folder of nsfw-desk cluster-scan."
                )
            models.setdefault(model["id"], model)
    for model in models.values():
        library.register_model(
            model["id"],
            source=model["source"],
            revision=model.get("revision"),
            architecture=model["architecture"],
            labels=list(model["labels"]),
            unsafe_labels=list(model["unsafe_labels"]),
            display_name=model.get("display_name"),
        )
    summary.models = list(models)
    unknown: set[str] = set()
    rows = results.read_rows(out, complete=True, skipped=summary.skipped)
    for chunk in _chunks(rows, CHUNK):
        files: list[ScoredFile] = []
        scores: list[tuple[str, str, float, bytes, bytes | None]] = []
        errors: list[FileError] = []
        for row in chunk:
            raw = map_path(results.row_path(row), maps)
            if is_uri(os.fsdecode(raw)):  # a row outside its run's source: no path for it
                raise results.ResultsError(
                    f"{out}: {os.fsdecode(raw)} is a URI no --map-prefix maps to a folder."
                )
            path = Path(os.fsdecode(raw))
            if row.get("error_kind") is not None:
                errors.append(
                    FileError(path, row["error_kind"], row["error"], row["size"], row["mtime_ns"])
                )
                continue
            digest = row["hash"]
            files.append(
                ScoredFile(
                    path,
                    row["size"],
                    row["mtime_ns"],
                    digest,
                    row["width"],
                    row["height"],
                    row["format"],
                    thumbnail=row.get("thumbnail"),
                    pdq=row.get("pdq"),
                    pdq_quality=row.get("pdq_quality"),
                )
            )
            for score in row.get("scores") or []:
                if score["model"] not in models:
                    unknown.add(score["model"])
                    continue
                scores.append(
                    (
                        digest,
                        score["model"],
                        float(score["unsafe"]),
                        np.asarray(score["probabilities"], dtype="<f4").tobytes(),
                        score["embedding"],
                    )
                )
        changed = library.import_results(files, scores, errors)
        for key, count in changed.items():
            summary.changed[key] += count
        summary.rows += len(chunk)
        summary.images += len(files)
        summary.errors += len(errors)
    if unknown:
        log.warning("scores of %d models not named in any run.json were left out", len(unknown))
    for record in records:
        root = _source(record)
        if root is None:
            continue
        mapped = Path(os.fsdecode(map_path(root, maps)))
        for model in record.get("models") or []:
            added = library.record_import(
                mapped, model["id"], files=summary.rows, errors=summary.errors
            )
            summary.changed["history"] += int(added)
    return summary


def _source(record: dict) -> bytes | None:
    encoded = record.get("source_base64")
    if encoded:
        return base64.b64decode(encoded)
    return os.fsencode(record["source"]) if record.get("source") else None
