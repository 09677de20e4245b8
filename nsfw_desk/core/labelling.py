"""Labels from outside the window: decisions for files named on the command line or in a CSV.

They are the desk's decisions (core/review.py), by content hash, filled the way the desk fills
them: the model and score are those the desk shows for the file (the latest model scan of a
folder holding it, else the model that scored the content most recently; none when no model
has scored it), the threshold and reviewer name are the desk's settings. A file the library
does not know yet is read, hashed and listed as a scan without a model lists it (its file row
and thumbnail, no score), so the desk shows it with its label; nothing is scored here.

The AI-generated label (the desk's G/R, core/review.py `decide_ai`) comes the same way, alone
or with the unsafe/safe label: `label --ai-generated yes|no|clear`, an `ai_generated` column
(true/false, yes/no, 1/0; empty leaves it unset). Its row keeps the AI detector's model id,
score and threshold as the desk's does: a model whose positive labels are AI-generated words
that scored the content (the latest), with that detector's threshold from the settings.

A file that is not an image or cannot be read is reported with the scan's error kinds and
changes nothing: no error row, no decision. All decisions and AI-generated labels of one run
are one transaction.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nsfw_desk.core.detector import FAKE_LABEL_NAMES
from nsfw_desk.core.images import (
    DiscoveryStats,
    ErrorKind,
    FileEntry,
    FileError,
    discover,
    missing_reason,
)
from nsfw_desk.core.paths import display_path
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.scan import ScanOptions, prepare_listing
from nsfw_desk.core.store import Library, ScoredFile

# What a label column may say (trimmed, any case) → the label stored.
LABEL_WORDS = {
    "unsafe": "unsafe",
    "nsfw": "unsafe",
    "1": "unsafe",
    "safe": "safe",
    "sfw": "safe",
    "0": "safe",
}
# What an ai_generated cell may say (trimmed, any case) → the value; empty: not asked.
AI_WORDS = {
    "true": True,
    "yes": True,
    "1": True,
    "ai": True,
    "false": False,
    "no": False,
    "0": False,
    "real": False,
}
AI_NAMES = {True: "AI-generated", False: "real", None: "AI-generated label cleared"}
HASH_FORM = re.compile(r"[0-9a-f]{64}")  # content_hash: BLAKE2b-256, lower-case hex
# Columns that name the file of a CSV row, best first: our own exports write source_path
# (plus source_path_base64 for names that are not UTF-8) and file_name (the exported copy).
PATH_COLUMNS = (
    ("path_base64", "path"),
    ("source_path_base64", "source_path"),
    (None, "file_name"),
)
DELIMITERS = ",;\t|"
FOLDER = "folder"  # the kind of a folder given without --recursive

# How an input ended.
LABELLED, UNCHANGED, DUPLICATE, REFUSED = "labelled", "unchanged", "duplicate", "refused"


class LabelFileError(Exception):
    """The CSV as a whole cannot be used (missing, not UTF-8, no label column)."""


@dataclass
class Item:
    """One input (a path argument, a file under a folder, or a CSV row) and how it ended."""

    where: str  # the path for people, or "line N" of the CSV
    label: str | None  # the label asked for; None clears (when `decide`)
    path: Path | None = None
    hash: str | None = None
    expected_hash: str | None = None  # a CSV row's hash column, checked against the file
    reviewer: str | None = None  # a CSV row's own reviewer
    note: str | None = None
    status: str = ""  # LABELLED, UNCHANGED, DUPLICATE or REFUSED once done
    kind: str | None = None  # why refused: an ErrorKind, FOLDER, or "row"
    reason: str = ""  # why refused, or what else to know
    model_id: str | None = None
    score: float | None = None
    listed: bool = False  # its file row was added (it was not in the library)
    decide: bool = True  # the unsafe/safe label is asked for (False: only the AI label)
    ai_asked: bool = False  # the AI-generated label is asked for
    ai: bool | None = None  # it: True AI-generated, False real, None clears
    records_label: bool = False  # once settled: a decision is recorded
    records_ai: bool = False  # once settled: an AI-generated label is recorded
    ai_model_id: str | None = None  # the AI detector's, as the desk's G/R records it
    ai_score: float | None = None
    ai_threshold: float | None = None

    def refuse(self, kind: str, reason: str) -> None:
        self.status, self.kind, self.reason = REFUSED, kind, reason

    def ask_ai(self, value: bool | None) -> None:
        self.ai_asked, self.ai = True, value

    def says(self) -> str:
        """What this input asks for, for people: "unsafe", "safe, AI-generated", "real"."""
        parts = [self.label or "clear"] if self.decide else []
        return ", ".join(parts + ([AI_NAMES[self.ai]] if self.ai_asked else []))

    def request(self) -> tuple:
        return (self.decide, self.decide and self.label, self.ai_asked, self.ai_asked and self.ai)


@dataclass
class LabelReport:
    items: list[Item]
    reviewer: str
    threshold: float
    decision_ids: list[int] = field(default_factory=list)
    ai_label_ids: list[int] = field(default_factory=list)
    listed: int = 0  # file rows added for files the library did not know
    recorded: bool = True  # False: --strict and something was refused, nothing written
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item.status == status)

    def labels(self) -> dict[str | None, int]:
        """How many decisions of each label were recorded."""
        found: dict[str | None, int] = {}
        for item in self.items:
            if item.status == LABELLED and item.records_label:
                found[item.label] = found.get(item.label, 0) + 1
        return found

    def ai_labels(self) -> dict[bool | None, int]:
        """How many AI-generated labels of each value were recorded."""
        found: dict[bool | None, int] = {}
        for item in self.items:
            if item.status == LABELLED and item.records_ai:
                found[item.ai] = found.get(item.ai, 0) + 1
        return found


def desk_path(path: Path) -> Path:
    """The path as the desk stores it: the folder resolved (the desk opens resolved folders),
    the name itself kept, so a symlinked file is labelled under its own name."""
    path = Path(os.path.expanduser(path))
    if path.name in ("", ".", ".."):
        return path.resolve()
    return path.parent.resolve() / path.name


def items_for_paths(
    paths: Iterable[Path], label: str | None, *, recursive: bool, include_hidden: bool = False
) -> tuple[list[Item], list[str]]:
    """One item per file argument; a folder gives its images with `recursive` (as a scan
    finds them), else one refused item saying how to label it. Returns (items, notes)."""
    items: list[Item] = []
    notes: list[str] = []
    seen: set[bytes] = set()
    for given in paths:
        path = desk_path(Path(given))
        if path.is_dir():
            if not recursive:
                item = Item(display_path(given), label, path)
                item.refuse(
                    FOLDER,
                    "is a folder: pass --recursive (-r) to label every image under it",
                )
                items.append(item)
                continue
            stats = DiscoveryStats()
            found = 0
            for entry in discover(path, include_hidden=include_hidden, stats=stats):
                found += 1
                if os.fsencode(entry.path) in seen:
                    continue
                seen.add(os.fsencode(entry.path))
                item = Item(display_path(entry.path), label, entry.path)
                if isinstance(entry, FileError):
                    item.refuse(entry.kind, entry.message)
                items.append(item)
            ignored = stats.ignored_not_images + stats.ignored_hidden
            if ignored or not found:
                notes.append(
                    f"{display_path(path)}: {found:,} images; {ignored:,} other or hidden "
                    "files ignored"
                )
            continue
        if os.fsencode(path) in seen:
            continue
        seen.add(os.fsencode(path))
        items.append(Item(display_path(given), label, path))
    return items, notes


def label_word(text: str | None) -> str | None:
    """The stored label for a CSV label cell; None when it is not one we know."""
    return LABEL_WORDS.get((text or "").strip().lower())


def ai_word(text: str) -> bool:
    """The AI-generated value of a non-empty cell or argument; ValueError saying what is
    accepted when it is not one we know."""
    try:
        return AI_WORDS[text.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown ai_generated value {text.strip()[:40]!r} (use true/false, yes/no or "
            "1/0; leave it empty for no AI-generated label)"
        ) from None


def read_label_csv(csv_path: Path) -> tuple[list[Item], list[str]]:
    """The rows of a labels CSV as items (bad rows already refused), and notes about it.

    Raises LabelFileError when the file as a whole cannot be used.
    """
    try:
        if not stat.S_ISREG(os.stat(csv_path).st_mode) and not os.path.isdir(csv_path):
            # Reading a FIFO waits for a writer forever; a device may never end.
            raise LabelFileError(
                f"{display_path(csv_path)} is not a regular file (a FIFO, device or socket): "
                "give the CSV file"
            )
        data = Path(csv_path).read_bytes()
    except FileNotFoundError as exc:
        raise LabelFileError(f"no such file: {display_path(csv_path)}") from exc
    except IsADirectoryError as exc:
        raise LabelFileError(f"{display_path(csv_path)} is a folder, not a CSV file") from exc
    except OSError as exc:
        raise LabelFileError(f"cannot read {display_path(csv_path)}: {exc.strerror}") from exc
    text = _decode_csv(data, csv_path)
    lines = text.splitlines()
    header_line = next((line for line in lines if line.strip()), "")
    if not header_line:
        raise LabelFileError(f"{display_path(csv_path)} is empty: it needs a header row")
    stream = io.StringIO(text, newline="")
    if re.fullmatch(r"sep=.", header_line.strip()):  # a spreadsheet's separator line
        delimiter = header_line.strip()[-1]
        while not stream.readline().strip():
            pass
        skipped = text[: stream.tell()].count("\n")
    else:
        delimiter, skipped = _delimiter(header_line), 0
    reader = csv.reader(stream, delimiter=delimiter)
    try:
        rows = _numbered_rows(reader, skipped)
    except csv.Error as exc:
        raise LabelFileError(
            f"{display_path(csv_path)} line {reader.line_num}: not readable as CSV: {exc}"
        ) from exc
    if not rows:
        raise LabelFileError(f"{display_path(csv_path)} is empty: it needs a header row")
    header_at, header = rows[0]
    columns = [name.strip().lower() for name in header]
    where = {name: i for i, name in reversed(list(enumerate(columns)))}
    found = ", ".join(repr(c) for c in columns)
    if "label" not in where and "ai_generated" not in where:
        raise LabelFileError(
            f"{display_path(csv_path)} line {header_at}: no 'label' column (found {found}; "
            f"columns are separated by {_delimiter_name(delimiter)}); an 'ai_generated' "
            "column alone also works"
        )
    identities = ["hash"] + [n for pair in PATH_COLUMNS for n in pair if n]
    if not any(name in where for name in identities):
        raise LabelFileError(
            f"{display_path(csv_path)} line {header_at}: no 'path' or 'hash' column "
            f"(found {found}); each row needs the file's path or its content hash"
        )
    notes = []
    if "decided_at" in where:
        notes.append(
            "the decided_at column is not used: decisions are dated when they are recorded "
            "here, like the desk's (the log says when this library learnt them)"
        )
    if "tags" in where:
        notes.append("the tags column is not imported (tags are not labels)")
    base = Path(csv_path).expanduser().absolute().parent
    items = [
        _row_item(number, cells, where, len(columns), base) for number, cells in rows[1:] if cells
    ]
    return items, notes


def _decode_csv(data: bytes, csv_path: Path) -> str:
    """UTF-8 with or without a BOM; UTF-16 when it starts with its BOM (Excel's "Unicode
    text"); anything else is refused with the place of the first bad byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise LabelFileError(f"{display_path(csv_path)}: damaged UTF-16 text: {exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LabelFileError(
            f"{display_path(csv_path)} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line "
            f"{line}). Save it as UTF-8 (in a spreadsheet: 'CSV UTF-8'), or convert it, e.g. "
            f"iconv -f LATIN1 -t UTF-8 OLD.csv > NEW.csv; a name that is not UTF-8 goes in a "
            f"path_base64 column"
        ) from exc


def _delimiter(header_line: str) -> str:
    """The separator the header uses. csv.Sniffer looks at data rows too, and a path with
    commas or semicolons fools it; the header names are plain words, so they decide."""
    try:
        return csv.Sniffer().sniff(header_line, delimiters=DELIMITERS).delimiter
    except csv.Error:
        counts = {d: header_line.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def _delimiter_name(delimiter: str) -> str:
    return {",": "commas", ";": "semicolons", "\t": "tabs", "|": "bars"}[delimiter]


def _numbered_rows(reader, skipped: int = 0) -> list[tuple[int, list[str]]]:
    """(first line of the row, its cells): a quoted cell may span lines. `skipped`: lines
    read before the reader started."""
    rows = []
    start = skipped + 1
    for cells in reader:
        rows.append((start, cells))
        start = skipped + reader.line_num + 1
    return [(n, c) for n, c in rows if any(cell.strip() for cell in c)]


def _row_item(number: int, cells: list[str], where: dict[str, int], width: int, base: Path):
    def cell(name: str) -> str:
        i = where.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    raw_label, raw_ai = cell("label"), cell("ai_generated")
    item = Item(f"line {number}", label_word(raw_label), decide=bool(raw_label))
    item.reviewer = " ".join(cell("reviewer").split()) or None
    item.note = cell("note") or None
    if len(cells) > width:
        item.refuse("row", f"{len(cells)} fields, the header has {width}")
        return item
    if not raw_label and not raw_ai:
        item.refuse(
            "row", "no label" + (" and no ai_generated value" if "ai_generated" in where else "")
        )
        return item
    if raw_label and item.label is None:
        item.refuse("row", f"unknown label {raw_label!r} (use unsafe/safe, nsfw/sfw or 1/0)")
        return item
    if raw_ai:
        try:
            item.ask_ai(ai_word(raw_ai))
        except ValueError as exc:
            item.refuse("row", str(exc))
            return item
    digest = cell("hash").lower()
    if digest:
        if not HASH_FORM.fullmatch(digest):
            item.refuse(
                "row",
                f"hash {digest[:80]!r} is not a content hash (64 hex digits, the "
                "BLAKE2b-256 of the file's bytes as the library stores it)",
            )
            return item
        item.hash = item.expected_hash = digest
    for encoded_name, text_name in PATH_COLUMNS:
        encoded = cell(encoded_name) if encoded_name else ""
        text = cell(text_name)
        if encoded:
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                item.refuse("row", f"{encoded_name} is not valid base64")
                return item
            if not raw:
                item.refuse("row", f"{encoded_name} holds an empty path")
                return item
            if b"\x00" in raw:
                item.refuse("row", f"{encoded_name} holds a NUL byte, which no file name can")
                return item
            item.path = desk_path(base / os.fsdecode(raw))
            break
        if text:
            if "\x00" in text:
                item.refuse("row", f"{text_name} holds a NUL byte, which no file name can")
                return item
            item.path = desk_path(base / text)
            break
    if item.path is None and item.hash is None:
        item.refuse("row", "neither a path nor a hash")
    return item


def resolve(library: Library, items: Sequence[Item], options: ScanOptions | None = None):
    """Give every item with a path its content hash; return the listing rows for files the
    library does not know yet (not written). Files whose size and modification time match
    the library are not read again, as in a rescan."""
    entries: list[FileEntry] = []
    waiting: dict[bytes, list[Item]] = {}
    for item in items:
        if item.status or item.path is None:
            continue
        try:
            st = os.stat(item.path)
        except FileNotFoundError:
            _failed(item, ErrorKind.VANISHED, missing_reason(item.path, "no such file"))
            continue
        except OSError as exc:
            _failed(item, ErrorKind.UNREADABLE, f"cannot read file: {exc.strerror}")
            continue
        if stat.S_ISDIR(st.st_mode):
            _failed(item, FOLDER, "is a folder; a CSV row names one file")
            continue
        facts = library.file_facts(item.path)
        if (
            facts
            and facts["hash"]
            and facts["size"] == st.st_size
            and facts["mtime_ns"] == st.st_mtime_ns
        ):
            _found(item, facts["hash"])
            continue
        key = os.fsencode(item.path)
        if key not in waiting:
            entries.append(FileEntry(item.path, st.st_size, st.st_mtime_ns))
        waiting.setdefault(key, []).append(item)
    rows, errors = prepare_listing(entries, library, options=options)
    for error in errors:
        for item in waiting.pop(os.fsencode(error.path), []):
            _failed(item, error.kind, error.message)
    by_path = {}
    for row in rows:
        for item in waiting.get(os.fsencode(row.path), []):
            _found(item, row.hash)
            item.listed = True
        by_path[os.fsencode(row.path)] = row
    return by_path


def _found(item: Item, digest: str) -> None:
    if item.expected_hash and item.expected_hash != digest:
        item.refuse(
            "changed",
            f"the file's content is not the row's hash: it changed since it was labelled "
            f"(file {digest[:12]}…, row {item.expected_hash[:12]}…)",
        )
        return
    item.hash = digest


def _failed(item: Item, kind: str, message: str) -> None:
    """A path that cannot be used; a row with a hash is still labelled when the file is
    merely absent here (decisions from another machine), keeping its path for the record."""
    if item.expected_hash and kind == ErrorKind.VANISHED:
        item.hash = item.expected_hash
        item.reason = "file not found here; labelled by its hash"
        return
    item.refuse(kind, message)


def fill_models(library: Library, items: Sequence[Item]) -> None:
    """The model and score the desk would show with each item (see the module docstring)."""
    scans = [
        (bytes(s["root_bytes"] or os.fsencode(s["root"])), s["model_id"])
        for s in sorted(library.scans(), key=lambda s: s["id"], reverse=True)
        if s["model_id"]
    ]
    latest = scans[0][1] if scans else None
    for item in items:
        if item.status == REFUSED or item.hash is None:
            continue
        scores = library.scores_by_model(item.hash)  # oldest first
        if not scores:
            continue
        folder_model = latest
        if item.path is not None:
            raw = os.fsencode(item.path)
            folder_model = next(
                (m for root, m in scans if raw.startswith(root.rstrip(b"/") + b"/")), latest
            )
        model_id = folder_model if folder_model in scores else list(scores)[-1]
        item.model_id, item.score = model_id, scores[model_id]


def fill_ai_models(
    library: Library, items: Sequence[Item], thresholds: Sequence[tuple[str, float]] = ()
) -> None:
    """The AI detector's model, score and threshold for each item asking for the AI label:
    the latest-scoring model whose positive labels are AI-generated words; the threshold
    of the settings' detector entry (model text, threshold) that names it, else none."""
    from nsfw_desk.core.detector_columns import matches

    models = {m["id"]: m for m in library.models_by_source()}
    detectors = {
        model_id
        for model_id in models
        if {str(n).lower() for n in models[model_id].get("unsafe_labels") or []} & FAKE_LABEL_NAMES
    }
    for item in items:
        if item.status == REFUSED or item.hash is None or not item.ai_asked:
            continue
        scored = [m for m in library.scores_by_model(item.hash) if m in detectors]
        if not scored:
            continue
        model_id = scored[-1]
        item.ai_model_id = model_id
        item.ai_score = library.scores_by_model(item.hash)[model_id]
        source, revision = models[model_id].get("source"), models[model_id].get("revision")
        item.ai_threshold = next(
            (
                level
                for text, level in thresholds
                if text == model_id or matches(text, source, revision)
            ),
            None,
        )


@dataclass
class _Known:
    """What the library holds for the items' contents: the label each shows, and each
    reviewer's own latest label ((hash, reviewer) keys), of both logs."""

    current: dict[str, str] = field(default_factory=dict)
    current_ai: dict[str, bool] = field(default_factory=dict)
    own: dict[tuple[str, str], str | None] = field(default_factory=dict)
    own_ai: dict[tuple[str, str], bool | None] = field(default_factory=dict)

    @classmethod
    def read(cls, review: ReviewStore, hashes: set[str]) -> _Known:
        return cls(
            review.current_labels(hashes),
            review.current_ai_labels(hashes),
            review.reviewers_labels(hashes),
            review.reviewers_ai_labels(hashes),
        )


def _new(value: object, shown: object, own: object) -> bool:
    """Whether a reviewer's label is news: the content shows another one, or it shows this
    one from someone else (another reviewer's agreement is a review of its own: agreement
    counts it). Clearing what shows no label is nothing to record."""
    return shown != value or (value is not None and own != value)


def _settle(items: Sequence[Item], known: _Known, reviewer: str) -> list[Item]:
    """Mark duplicates, conflicts and unchanged items; return the items to record (each
    says which of its two labels it records). `reviewer`: who an item without its own
    reviewer is recorded as."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        if item.status == REFUSED or item.hash is None:
            continue
        groups.setdefault(item.hash, []).append(item)
    todo = []
    for digest, group in groups.items():
        said = {item.request() for item in group}
        if len(said) > 1:
            which = ", ".join(f"{i.where} says {i.says()}" for i in group)
            for item in group:
                item.refuse("conflict", f"the same image is given different labels: {which}")
            continue
        heads: dict[str, Item] = {}  # one per reviewer: each reviewer's review counts
        for item in group:
            who = item.reviewer or reviewer
            if who in heads:
                item.status = DUPLICATE
                item.reason = f"the same image as {heads[who].where}"
                continue
            head = heads[who] = item
            head.records_label = head.decide and _new(
                head.label, known.current.get(digest), known.own.get((digest, who))
            )
            head.records_ai = head.ai_asked and _new(
                head.ai, known.current_ai.get(digest), known.own_ai.get((digest, who))
            )
            already = []
            if head.decide and not head.records_label:
                already.append(head.label or "without a label")
            if head.ai_asked and not head.records_ai:
                value = known.current_ai.get(digest)
                already.append(
                    AI_NAMES[value] if value is not None else "without an AI-generated label"
                )
            if already:
                head.reason = "already " + " and ".join(already)
            if head.records_label or head.records_ai:
                todo.append(head)
            else:
                head.status = UNCHANGED
    return todo


def record_labels(
    library: Library,
    items: list[Item],
    *,
    reviewer: str,
    threshold: float,
    strict: bool = False,
    options: ScanOptions | None = None,
    notes: Sequence[str] = (),
    ai_thresholds: Sequence[tuple[str, float]] = (),
) -> LabelReport:
    """Resolve, check and record `items`: one transaction for every decision and
    AI-generated label. `ai_thresholds`: the settings' (detector model, threshold).

    With `strict`, one refused item means nothing is written (no listing, no decision).
    """
    report = LabelReport(items, reviewer, threshold, notes=list(notes))
    rows = resolve(library, items, options)
    review = ReviewStore(library)
    hashes = {item.hash for item in items if item.hash and item.status != REFUSED}
    todo = _settle(items, _Known.read(review, hashes), reviewer)
    if strict and any(item.status == REFUSED for item in items):
        report.recorded = False
        for item in items:
            if item.status != REFUSED:
                item.status, item.reason = "", "not recorded (--strict)"
        return report
    fill_models(library, [i for i in todo if i.records_label])
    fill_ai_models(library, todo, ai_thresholds)
    keep = {
        os.fsencode(item.path)
        for item in items
        if item.listed and item.path is not None and item.status != REFUSED
    }
    listing: list[ScoredFile] = [row for key, row in rows.items() if key in keep]
    library.record_scored(listing, None)
    report.listed = len(listing)
    decided = [i for i in todo if i.records_label]
    ai = [i for i in todo if i.records_ai]
    report.decision_ids, report.ai_label_ids = review.record_both(
        [(DecisionInput(i.hash or "", i.model_id, i.score, i.path), i.label) for i in decided],
        [
            (DecisionInput(i.hash or "", i.ai_model_id, i.ai_score, i.path), i.ai, i.ai_threshold)
            for i in ai
        ],
        reviewer=reviewer,
        threshold=threshold,
        reviewers=[i.reviewer for i in decided],
        notes=[i.note for i in decided],
        ai_reviewers=[i.reviewer for i in ai],
    )
    for item in todo:
        item.status = LABELLED
    return report
