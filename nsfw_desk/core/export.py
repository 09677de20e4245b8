"""Dataset export: reviewed images into a train/val class-folder dataset with metadata."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from nsfw_desk.core.defaults import PROGRESS_INTERVAL_S, VAL_FRACTION
from nsfw_desk.core.durable import fsync_dir, unwritable_reason, write_durably
from nsfw_desk.core.images import ImageError, content_hash, read_file
from nsfw_desk.core.paths import display_path, path_fields
from nsfw_desk.core.progress import Cancelled, CancelToken, Progress, ProgressCallback
from nsfw_desk.core.review import Decision, ReviewStore
from nsfw_desk.core.store import Library
from nsfw_desk.core.units import format_rate, format_size

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
COLUMNS = (
    "file_name",
    "label",
    "class_index",  # the label's line in class_map.txt (0-based): the base model's label order
    "split",
    "score",
    "model",
    "scores",  # every model's score of the image: {model id: score}, None where it has none
    "threshold",
    "reviewer",
    "decided_at",
    "source_path",
    "source_path_base64",  # the exact path bytes, when source_path is not valid UTF-8
    "hash",
    "note",  # the reviewer's latest note on the item, "" when none
    "tags",  # its current tags: a list in JSON, joined by "; " in the CSV
    "ai_generated",  # the AI-generated label (keys G/R): true, false, or null when none
)
EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "DIB": "bmp",
    "TIFF": "tif",
}
TRAIN_BATCH_SIZE = 128  # timm train.py's default --batch-size
TIMM_EXTENSIONS = frozenset({"jpg", "jpeg", "png"})  # timm's folder reader's default list
CARD_MARKER = "<!-- written by nsfw-desk export -->"
VANISHED, CHANGED = "vanished", "changed since review"
_HASH = re.compile(r"[0-9a-f]{64}")
_CLASS_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class ExportOptions:
    out: Path
    only_corrections: bool = False  # default: every reviewed item
    folder: Path | None = None  # only items with a file under this folder
    reviewer: str | None = None  # only items whose current decision is by this reviewer
    since: str | None = None  # ISO date/time, inclusive, on decided_at (naive = UTC)
    until: str | None = None  # ISO date/time, inclusive (a date covers that whole day)
    val_fraction: float = VAL_FRACTION
    seed: int = 0
    link: bool = False  # hard links where possible, else copies
    overwrite: bool = False
    include_source_path: bool = True


@dataclass
class ExportReport:
    out: Path
    exported: int
    counts: dict[str, dict[str, int]]  # split -> class -> n
    skipped: list[tuple[str, str]]  # (source path or hash, reason)
    bytes: int
    elapsed_s: float
    linked: int
    notes: list[str] = field(default_factory=list)  # warnings for the user, also in README
    model_names: dict[str, str] = field(default_factory=dict)  # model id → display name

    @property
    def files_per_s(self) -> float:
        return self.exported / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.elapsed_s if self.elapsed_s > 0 else 0.0


class ExportError(Exception):
    """The export cannot be done as asked; the message is for the user."""


class TargetExists(ExportError):
    """The output folder exists and overwriting was not asked for; each front end names its
    own way to ask (`--overwrite`, the dialog's checkbox)."""


@dataclass
class _Exported:
    decision: Decision
    label: str  # class folder name
    name: str  # <hash>.<ext>
    source: Path  # the file the bytes came from
    size: int
    split: str = "train"
    note: str = ""
    tags: tuple[str, ...] = ()
    ai_generated: bool | None = None

    @property
    def file_name(self) -> str:
        return f"{self.split}/{self.label}/{self.name}"


# --- selection ----------------------------------------------------------------------------


def _parse_when(text: str, *, end: bool) -> datetime:
    """An ISO date or date-time as UTC (naive counts as UTC); a bare date as a whole day."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ExportError(f"not an ISO date or date-time: {text!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if end and _DATE_ONLY.fullmatch(text.strip()):
        when += timedelta(days=1) - timedelta(microseconds=1)
    return when.astimezone(timezone.utc)


def _decided(decision: Decision) -> datetime | None:
    try:
        when = datetime.fromisoformat(decision.decided_at)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def is_correction(decision: Decision) -> bool:
    """The reviewer disagreed with what the model said at the threshold then in force."""
    if decision.score is None or decision.threshold is None:
        return False
    model_said = "unsafe" if decision.score >= decision.threshold else "safe"
    return decision.label != model_said


def _folder_roots(folder: Path) -> list[Path]:
    """The folder as given, absolute and resolved: stored paths use whichever the scan got."""
    folder = folder.expanduser()
    return list(dict.fromkeys([folder, Path(os.path.abspath(folder)), folder.resolve()]))


def select_decisions(library: Library, options: ExportOptions) -> list[Decision]:
    """The current labelled decisions the options select, one per content hash, by hash."""
    since = _parse_when(options.since, end=False) if options.since else None
    until = _parse_when(options.until, end=True) if options.until else None
    if since and until and since > until:
        raise ExportError(f"--since {options.since} is after --until {options.until}")
    in_folder = None
    if options.folder is not None:
        in_folder = set().union(*(library.hashes_under(r) for r in _folder_roots(options.folder)))
    selected = []
    for decision in ReviewStore(library).current_decisions():
        if options.only_corrections and not is_correction(decision):
            continue
        if options.reviewer is not None and decision.reviewer != options.reviewer:
            continue
        if in_folder is not None and decision.hash not in in_folder:
            continue
        if since or until:
            when = _decided(decision)
            if when is None or (since and when < since) or (until and when > until):
                continue
        selected.append(decision)
    return selected


@dataclass(frozen=True)
class ClassOrder:
    """The export's classes in index order: decision label → class folder name.

    When the decisions were scored with a model that has exactly two known labels, the
    order is that model's `label_names` order, so class index i (timm `--class-map
    class_map.txt`) is that model's label i and training on it keeps the head's meaning.
    Otherwise there is no base order to follow and it is alphabetical (safe, unsafe), as
    torchvision's ImageFolder numbers folders; `why` says which.
    """

    names: dict[str, str]  # insertion order = class index order
    model_id: str | None = None  # the model whose label order this follows
    model_labels: tuple[str, ...] = ()  # that model's label_names, as registered
    why: str = ""  # for the data card: where the order comes from

    @property
    def folders(self) -> list[str]:
        """Class folder names in index order: the lines of class_map.txt."""
        return list(self.names.values())

    @property
    def alphabetical(self) -> bool:
        return self.folders == sorted(self.folders)


def _fallback(why: str) -> ClassOrder:
    return ClassOrder({"safe": "safe", "unsafe": "unsafe"}, why=f"alphabetical order: {why}")


def class_order(library: Library, decisions: list[Decision]) -> ClassOrder:
    """The classes of the most common model's two labels, in its label order; else
    unsafe/safe in alphabetical order (see `ClassOrder`).

    One naming for the whole export, so there are always exactly two class folders.
    """
    used = Counter(d.model_id for d in decisions if d.model_id)
    if not used:
        return _fallback("no decision names the model it was scored with")
    model_id = min(used, key=lambda m: (-used[m], m))
    labels, unsafe = library.model_labels(model_id) or ([], [])
    names = [name.lower() for name in labels]
    unsafe_names = [name.lower() for name in unsafe]
    if (
        len(names) != 2
        or len(unsafe_names) != 1
        or unsafe_names[0] not in names
        or names[0] == names[1]
        or not all(_CLASS_NAME.fullmatch(n) for n in names)
    ):
        shown = ", ".join(labels) if labels else "unknown"
        return _fallback(
            f"the model the decisions were scored with ({shown}) does not have exactly two "
            "labels usable as folder names, one of them unsafe"
        )
    by_label = {"unsafe" if n == unsafe_names[0] else "safe": n for n in names}
    return ClassOrder(
        by_label,
        model_id,
        tuple(labels),
        f"the label order of the model the decisions were scored with ({', '.join(labels)})",
    )


def class_names(library: Library, decisions: list[Decision]) -> dict[str, str]:
    """Decision label → class folder, in class index order (see `class_order`)."""
    return class_order(library, decisions).names


def extension(stored_format: str | None, source: Path | None) -> str:
    """From the stored format, else the source suffix reduced to [a-z0-9], else 'bin'."""
    if stored_format and stored_format.upper() in EXTENSIONS:
        return EXTENSIONS[stored_format.upper()]
    suffix = os.fsdecode(source.suffix).lower() if source is not None else ""
    cleaned = re.sub(r"[^a-z0-9]", "", suffix)[:8]
    return cleaned or "bin"


def split_val(hashes_by_class: dict[str, list[str]], fraction: float, seed: int) -> set[str]:
    """Stratified: per class, sorted hashes permuted by Generator(seed); round(f·n) go to val."""
    val: set[str] = set()
    for hashes in hashes_by_class.values():
        ordered = sorted(hashes)
        order = np.random.default_rng(seed).permutation(len(ordered))
        val.update(ordered[i] for i in order[: round(fraction * len(ordered))])
    return val


# --- files --------------------------------------------------------------------------------


def _try_link(source: Path, target: Path, before: os.stat_result) -> bool:
    """Hard-link `source` if it is still the very file that was read and verified."""
    try:
        os.link(source, target)
    except OSError:  # another filesystem, no hard links there, permissions, link limit...
        return False
    st = os.stat(target)
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != (
        before.st_dev,
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    ):
        os.unlink(target)  # replaced between the read and the link
        return False
    return True


def _export_one(
    decision: Decision,
    candidates: list[tuple[Path, str, str | None]],
    stored_format: str | None,
    folder: Path,
    link: bool,
) -> tuple[_Exported | None, tuple[str, str] | None, bool]:
    """Copy (or link) the first candidate whose bytes still hash to the decision's hash.

    Returns (exported, None, linked) or (None, (path or hash, reason), False).
    """
    failures: list[tuple[str, str]] = []
    for path, text, _ in candidates:
        try:
            before = os.stat(path) if link else None
            data = read_file(path)
        except (ImageError, OSError, ValueError) as exc:  # ValueError: a NUL in the name
            gone = isinstance(exc, FileNotFoundError) or getattr(exc, "kind", "") == VANISHED
            failures.append((text, VANISHED if gone else f"unreadable: {exc}"))
            continue
        if content_hash(data) != decision.hash:
            failures.append((text, f"{CHANGED} (content differs)"))
            continue
        name = f"{decision.hash}.{extension(stored_format, path)}"
        linked = before is not None and _try_link(path, folder / name, before)
        if not linked:
            write_durably(folder / name, data, mode=0o644)
        return _Exported(decision, folder.name, name, path, len(data)), None, linked
    if not failures:
        return None, (decision.hash, "no stored path for this content"), False
    changed = [f for f in failures if f[1].startswith(CHANGED)]
    other = [f for f in failures if f[1] != VANISHED]
    return None, (changed or other or failures)[0], False


# --- output -------------------------------------------------------------------------------


def _rows(
    items: list[_Exported],
    folders: list[str],
    include_source_path: bool,
    scores: dict[str, dict[str, float]] | None = None,
) -> list[dict]:
    """Every row has every column (Hugging Face reads one schema from all of them);
    `source_path_base64` is None unless the name is not valid UTF-8 (core/paths.py).
    `scores` (content hash -> {model id: score}): every row's `scores` has the same keys,
    every model that scored an exported image, None where that model did not score it."""
    scores = scores or {}
    models = sorted({m for item in items for m in scores.get(item.decision.hash, {})})
    return [
        {
            "file_name": item.file_name,
            "label": item.label,
            "class_index": folders.index(item.label),
            "split": item.split,
            "score": item.decision.score,
            "model": item.decision.model_id or "",
            "scores": {m: scores.get(item.decision.hash, {}).get(m) for m in models},
            "threshold": item.decision.threshold,
            "reviewer": item.decision.reviewer,
            "decided_at": item.decision.decided_at,
            "source_path": "",
            "source_path_base64": None,
            **(path_fields(item.source, "source_path") if include_source_path else {}),
            "hash": item.decision.hash,
            "note": item.note,
            "tags": list(item.tags),
            "ai_generated": item.ai_generated,
        }
        for item in sorted(items, key=lambda i: i.file_name)
    ]


def _write_text(path: Path, text: str) -> None:
    write_durably(path, text.encode("utf-8", "backslashreplace"), mode=0o644)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _csv_value(v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _csv_value(value):
    """A CSV cell: lists joined by "; ", dicts as JSON, booleans as true/false, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "; ".join(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def _printable(text: str) -> str:
    """No control characters (newlines, escapes) from stored names in text for people."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _card(
    items: list[_Exported],
    counts: dict[str, dict[str, int]],
    order: ClassOrder,
    options: ExportOptions,
    skipped: int,
    notes: list[str],
    model_names: dict[str, str] | None = None,
) -> str:
    """README.md: HF configs (one metadata file per split), counts, models, selection."""
    names = model_names or {}
    classes = order.names
    models = Counter(
        names.get(i.decision.model_id, i.decision.model_id) if i.decision.model_id else "(none)"
        for i in items
    )
    thresholds = Counter(i.decision.threshold for i in items)
    reviewers = Counter(i.decision.reviewer for i in items)
    folder = (
        "(any)"
        if options.folder is None
        else (
            f"`{_printable(str(options.folder))}`" if options.include_source_path else "(withheld)"
        )
    )
    scope = (
        "corrections only (the reviewer disagreed with the model at the threshold in force then)"
        if options.only_corrections
        else "every reviewed item"
    )
    hf_splits = [
        (name, split)
        for name, split in (("train", "train"), ("validation", "val"))
        if sum(counts[split].values())
    ]  # an empty split would fail to load there
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *(f"  - split: {name}\n    path: {split}/**" for name, split in hf_splits),
        "---",
        CARD_MARKER,
        "",
        "# Reviewed images exported by nsfw-desk",
        "",
        f"Exported {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}: {len(items):,} images "
        f"labelled by human reviewers, {skipped:,} selected items skipped (source vanished or "
        "changed since review).",
        "",
        "| split | " + " | ".join(classes.values()) + " | total |",
        "|---|" + "---:|" * (len(classes) + 1),
    ]
    for split in SPLITS:
        row = counts[split]
        lines.append(
            f"| {split} | "
            + " | ".join(f"{row[c]:,}" for c in classes.values())
            + f" | {sum(row.values()):,} |"
        )
    lines += ["", *_classes_section(order, names)]
    lines += [
        "",
        "## Selection",
        "",
        f"- items: {scope}",
        f"- folder: {folder}",
        f"- reviewer: {_printable(options.reviewer or '(any)')}",
        f"- decided from {_printable(options.since or '(any)')} to "
        f"{_printable(options.until or '(any)')} (UTC, inclusive)",
        f"- validation fraction {options.val_fraction:g} per class, seed {options.seed}",
        "",
        "## Models and thresholds",
        "",
        *(f"- model `{_printable(m)}`: {n:,} images" for m, n in models.most_common()),
        *(
            f"- threshold {'(none)' if t is None else f'{t:g}'}: {n:,} images"
            for t, n in sorted(thresholds.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
        ),
        *(f"- reviewer {_printable(r)}: {n:,} images" for r, n in reviewers.most_common()),
        "",
        "## Files",
        "",
        "- `train/<class>/<hash>.<ext>`, `val/<class>/...`: image bytes exactly as reviewed "
        "(BLAKE2b-256 of the bytes = the name)",
        "- `metadata.jsonl`, `labels.csv`: one row per image, `file_name` relative to this folder",
        "- `train/metadata.jsonl`, `val/metadata.jsonl`: the same rows per split, `file_name` "
        "relative to the split (for Hugging Face `imagefolder`)",
        "- `class_map.txt`: class folder names in index order (timm `--class-map`); "
        "`class_index` in the metadata is the same index",
        "",
        "Load with timm `--data-dir . --class-map class_map.txt` (or "
        '`timm.data.create_dataset("", root=".", split="train", class_map="class_map.txt")`), '
        '`torchvision.datasets.ImageFolder("train")` (alphabetical indices, see Classes), or '
        '`datasets.load_dataset("imagefolder", data_dir=".")` (its `label` column is text: '
        '`.class_encode_column("label")` makes it a class label).',
        "",
        *_recipe_section(order, counts),
    ]
    if notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def _classes_section(order: ClassOrder, model_names: dict[str, str]) -> list[str]:
    """Which index each class has, and why: a model trained on the export must agree."""
    reviewed_as = {name: label for label, name in order.names.items()}
    lines = [
        "## Classes",
        "",
        f"Class indices follow {_printable(order.why)}"
        + (
            f": model `{_printable(model_names.get(order.model_id, order.model_id))}`"
            if order.model_id
            else ""
        )
        + ". `class_map.txt` lists the folders in this order:",
        "",
    ]
    for index, name in enumerate(order.folders):
        label = order.model_labels[index] if order.model_labels else None
        base = f", the base model's label `{_printable(label)}`" if label else ""
        lines.append(f"{index}. `{name}`: reviewed as {reviewed_as[name]}{base}")
    lines.append("")
    if order.model_id is None:
        lines.append(
            "No base model order is known. Before training on a base model, check that its "
            "`label_names` name these classes in this order, or reorder `class_map.txt` to "
            "match them; `nsfw-desk import-weights --labels` then names the classes in the "
            "`class_map.txt` order."
        )
    elif not order.alphabetical:
        lines.append(
            "This is not alphabetical: tools that number class folders alphabetically "
            "(torchvision's `ImageFolder`, timm without `--class-map`) would swap the "
            "classes against the base model's head. Pass `--class-map class_map.txt`."
        )
    else:
        lines.append(
            "Alphabetical too, so tools that number class folders alphabetically agree; "
            "pass `--class-map class_map.txt` to timm all the same."
        )
    return lines


def suggested_batch_size(train_images: int, preferred: int = TRAIN_BATCH_SIZE) -> int:
    """A train.py batch size that trains at least one step per epoch: its training loader
    drops the last incomplete batch, so a split smaller than the batch trains nothing."""
    return max(1, min(preferred, train_images))


def recipe_commands(
    order: ClassOrder, train_images: int, *, data: str = ".", base: str = "BASE"
) -> list[str]:
    """timm's train.py on this export on a CPU, offline, then into a model folder the desk
    loads. README "Export and calibration" gives the same commands (a test checks)."""
    batch = suggested_batch_size(train_images)
    labels = "" if order.model_id else f" --labels {','.join(order.folders)}"
    return [
        f"python train.py --data-dir {data} --train-split train --val-split val "
        f"--class-map {data}/class_map.txt \\\n"
        f"  --model local-dir:{base} --pretrained --num-classes {len(order.folders)} "
        f"--batch-size {batch} --device cpu \\\n"
        "  --opt adamw --lr 1e-5 --epochs 5 --workers 2 --output runs --experiment ft",
        "python clean_checkpoint.py --checkpoint runs/ft/model_best.pth.tar "
        "--output ft.safetensors --safetensors --no-hash",
        f"nsfw-desk import-weights ft.safetensors --base {base} --out MODEL_DIR "
        f"--data {data}{labels}",
        "nsfw-desk scan --model MODEL_DIR FOLDER",
    ]


def _recipe_section(order: ClassOrder, counts: dict[str, dict[str, int]]) -> list[str]:
    """The external route for this export (README "Export and calibration" explains it)."""
    train_images = sum(counts["train"].values())
    lines = [
        "## Fine-tune with timm's train.py",
        "",
        "On a CPU and offline, from this folder, with `BASE` a folder holding the base "
        "model's `config.json` and `model.safetensors` (nsfw-desk README: Models), and "
        "`train.py` and `clean_checkpoint.py` from timm's repository at the tag of the "
        "installed timm version:",
        "",
        "```sh",
        *recipe_commands(order, train_images),
        "```",
        "",
        "`--pretrained` with `local-dir:` keeps the base model's head and `label_names` "
        "(`--pretrained-path` would start a new head); `--class-map` puts each class at the "
        "index listed under Classes. train.py writes pickle checkpoints (`.pth.tar`), which "
        "nsfw-desk never loads: `clean_checkpoint.py --safetensors` keeps only the weights, "
        "and `nsfw-desk import-weights` checks them against the base model and writes a "
        "model folder with its `label_names`.",
    ]
    if train_images < TRAIN_BATCH_SIZE:
        lines += [
            "",
            f"**Warning: the train split has {train_images:,} images, fewer than train.py's "
            f"default batch size of {TRAIN_BATCH_SIZE}.** Its training loader drops an "
            "incomplete last batch, so with the default it trains zero steps and still exits "
            f"0: keep `--batch-size` at {max(train_images, 1):,} or less (as above).",
        ]
    return lines


def _notes(items: list[_Exported], counts: dict[str, dict[str, int]], link: bool) -> list[str]:
    notes = []
    others = Counter(
        i.name.rsplit(".", 1)[1] for i in items if i.name.rsplit(".", 1)[1] not in TIMM_EXTENSIONS
    )
    if others:
        kinds = ", ".join(f"{n:,} .{ext}" for ext, n in sorted(others.items()))
        notes.append(
            f"{kinds} files: timm's folder reader reads only .jpg, .jpeg and .png by "
            "default (torchvision's ImageFolder skips .gif and .bin)"
        )
    empty = [f"{split}/{name}" for split in SPLITS for name, n in counts[split].items() if not n]
    if empty:
        notes.append(
            f"empty class folders: {', '.join(empty)} (torchvision's ImageFolder "
            "refuses them; timm needs --class-map class_map.txt to keep class indices)"
        )
    if link:
        notes.append(
            "images are hard links to the originals where possible: editing one in "
            "place edits the original too"
        )
    return notes


# --- the export ---------------------------------------------------------------------------


STALE_PARTIAL_S = 24 * 3600  # a leftover without a live owner we can tell


def _tidy_beside(out: Path) -> None:
    """Put right what killed exports left beside `out`. A partial export (copies of reviewed
    images nobody would otherwise find) is deleted. An earlier export renamed aside by an
    overwrite that never finished goes back to `out` when nothing took its place (as if the
    overwrite had not begun), and is deleted when the new export did. Each names its
    process: a leftover whose process is gone is stale, and so is one older than a day whose
    owner cannot be told (an earlier version's, or on Windows, where probing a process
    ends it)."""
    prefix = f".{out.name[:100]}."
    try:
        found = [
            e
            for e in os.scandir(out.parent)
            if e.name.startswith((prefix + "partial-", prefix + "old-")) and e.is_dir()
        ]
    except OSError:
        return
    for entry in found:
        kind, _, rest = entry.name[len(prefix) :].partition("-")
        owner = rest.split("-", 1)[0]
        if owner.isdigit() and os.name == "posix":
            stale = not _alive(int(owner))
        else:
            try:
                stale = time.time() - entry.stat().st_mtime > STALE_PARTIAL_S
            except OSError:
                continue
        if not stale:
            continue
        if kind == "old" and not os.path.lexists(out):
            log.info("putting back the export an interrupted overwrite set aside: %s", out)
            os.rename(entry.path, out)
        else:
            log.info("removing what a stopped export left: %s", entry.path)
            shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: alive
        return True
    return True


def _target(options: ExportOptions) -> Path:
    return Path(os.path.abspath(options.out.expanduser()))


def _check_target(options: ExportOptions) -> Path:
    out = _target(options)
    if not out.name:
        raise ExportError(f"{options.out} cannot be an export folder")
    if not 0.0 <= options.val_fraction <= 1.0:
        raise ExportError("the validation fraction must be between 0 and 1")
    if options.seed < 0:
        raise ExportError("the seed must be 0 or more")
    if os.path.lexists(out):
        if out.is_symlink() or not out.is_dir():
            raise ExportError(f"{out} exists and is not a folder")
        if not options.overwrite:
            raise TargetExists(f"{out} already exists; choose another folder or overwrite it")
        if not _replaceable(out):
            raise ExportError(f"{out} is neither empty nor an nsfw-desk export; not replacing it")
    why = unwritable_reason(out, folder=True)
    if why:
        raise ExportError(why)
    return out


def _scanned_folder_holding(library: Library, out: Path) -> Path | None:
    """The scanned folder (of the library's scan history) that `out` lies in, if any."""
    real_out = Path(os.path.realpath(out))
    roots = {bytes(row["root_bytes"]) for row in library.scans() if row.get("root_bytes")}
    for raw in sorted(roots):
        root = Path(os.fsdecode(raw))
        if out.is_relative_to(root) or real_out.is_relative_to(os.path.realpath(root)):
            return root
    return None


def _replaceable(folder: Path) -> bool:
    """Only an empty folder or an earlier export may be deleted by overwrite."""
    if not any(folder.iterdir()):
        return True
    card = folder / "README.md"
    try:
        with open(card, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return CARD_MARKER in head and (folder / "metadata.jsonl").is_file()


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished folder to `out`; an old export is renamed aside, then deleted."""
    if not os.path.lexists(out):
        os.rename(tmp, out)
    elif not overwrite or out.is_symlink() or not out.is_dir() or not _replaceable(out):
        raise ExportError(f"{out} appeared during the export; nothing was replaced")
    else:
        aside = Path(
            tempfile.mkdtemp(prefix=f".{out.name[:100]}.old-{os.getpid()}-", dir=out.parent)
        )
        os.rmdir(aside)  # only a unique name was wanted; Windows cannot rename onto a folder
        os.rename(out, aside)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(aside, out)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    fsync_dir(out.parent)


class _Meter:
    """Throttled export progress: files done of total, bytes, MB/s, ETA."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback, self.total = callback, total
        self.start = self.last = time.monotonic()

    def report(self, done: int, nbytes: int, skipped: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.callback or (not force and now - self.last < PROGRESS_INTERVAL_S):
            return
        self.last = now
        elapsed = now - self.start
        rate = nbytes / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) * elapsed / done if done else None
        self.callback(
            Progress(
                "export",
                done,
                self.total,
                skipped,
                rate,
                eta,
                f"{done:,} / {self.total:,} files · {format_size(nbytes)} · {format_rate(rate)}",
            )
        )


def export_dataset(
    library: Library,
    options: ExportOptions,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Write the selected reviewed images to `options.out` as a whole, or nothing at all.

    Everything goes into a hidden folder beside the target, renamed into place at the end; a
    failure or a cancel (raises `Cancelled`) deletes it. Originals are only opened for reading.
    """
    started = time.monotonic()
    _tidy_beside(_target(options))
    out = _check_target(options)
    inside = _scanned_folder_holding(library, out)
    if inside is not None:
        raise ExportError(
            f"{out} is inside {display_path(inside)}, a folder this library scans: its next "
            "scan would take the exported copies for new images; choose a folder outside it"
        )
    decisions = select_decisions(library, options)
    if not decisions:
        raise ExportError("nothing to export: no reviewed item matches the selection")
    order = class_order(library, decisions)
    classes = order.names
    files = library.files_for_hashes(d.hash for d in decisions)
    roots = _folder_roots(options.folder) if options.folder is not None else []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:100]}.partial-{os.getpid()}-", dir=out.parent))
    meter = _Meter(progress, len(decisions))
    exported: list[_Exported] = []
    skipped: list[tuple[str, str]] = []
    nbytes = linked = 0
    try:
        for split in SPLITS:
            for name in classes.values():
                (tmp / split / name).mkdir(parents=True)
        for done, decision in enumerate(decisions, start=1):
            if cancel is not None and cancel.cancelled:
                raise Cancelled()
            if not _HASH.fullmatch(decision.hash):
                skipped.append((decision.hash, "not a content hash"))
                continue
            stored = files.get(decision.hash, [])
            candidates = sorted(
                stored, key=lambda f: not any(f[0].is_relative_to(r) for r in roots)
            )
            source = decision.source
            if source is not None and os.fsencode(source) not in {
                os.fsencode(f[0]) for f in stored
            }:
                candidates.insert(
                    len(candidates) if roots else 0, (source, display_path(source), None)
                )
            stored_format = next((f[2] for f in stored if f[2]), None)
            assert decision.label is not None  # select_decisions keeps labelled ones only
            item, skip, was_linked = _export_one(
                decision,
                candidates,
                stored_format,
                tmp / "train" / classes[decision.label],
                options.link,
            )
            if item is None:
                assert skip is not None
                skipped.append(skip)
            else:
                exported.append(item)
                nbytes += item.size
                linked += was_linked
            meter.report(done, nbytes, len(skipped))
        meter.report(len(decisions), nbytes, len(skipped), force=True)
        if not exported:
            reasons = "; ".join(f"{_printable(w)}: {r}" for w, r in skipped[:3])
            raise ExportError(
                f"nothing could be exported: all {len(skipped):,} selected items "
                f"were skipped ({reasons})"
            )
        by_class: dict[str, list[str]] = {}
        for item in exported:
            by_class.setdefault(item.label, []).append(item.decision.hash)
        val = split_val(by_class, options.val_fraction, options.seed)
        for item in exported:
            if item.decision.hash in val:
                os.rename(tmp / item.file_name, tmp / "val" / item.label / item.name)
                item.split = "val"
        counts = {split: {name: 0 for name in classes.values()} for split in SPLITS}
        for item in exported:
            counts[item.split][item.label] += 1
        notes = _notes(exported, counts, options.link)
        reviews = ReviewStore(library)
        hashes = [item.decision.hash for item in exported]
        latest_notes, tags = reviews.latest_notes(hashes), reviews.tags(hashes)
        ai_labels = reviews.current_ai_labels(hashes)
        for item in exported:
            item.note = latest_notes.get(item.decision.hash, "")
            item.tags = tuple(tags.get(item.decision.hash, ()))
            item.ai_generated = ai_labels.get(item.decision.hash)
        model_names = library.model_names({d.model_id for d in decisions if d.model_id})
        rows = _rows(
            exported, order.folders, options.include_source_path, library.scores_of(hashes)
        )
        _write_text(tmp / "metadata.jsonl", _jsonl(rows))
        _write_text(tmp / "labels.csv", _csv(rows))
        for split in SPLITS:  # per split too: Hugging Face ignores a top-level one here
            part = [
                row | {"file_name": row["file_name"][len(split) + 1 :]}
                for row in rows
                if row["split"] == split
            ]
            if part:
                _write_text(tmp / split / "metadata.jsonl", _jsonl(part))
        _write_text(tmp / "class_map.txt", "".join(name + "\n" for name in order.folders))
        _write_text(
            tmp / "README.md",
            _card(exported, counts, order, options, len(skipped), notes, model_names),
        )
        for split in SPLITS:
            for name in classes.values():
                fsync_dir(tmp / split / name)
            fsync_dir(tmp / split)
        fsync_dir(tmp)
        _move_into_place(tmp, out, options.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportReport(
        out,
        len(exported),
        counts,
        skipped,
        nbytes,
        time.monotonic() - started,
        linked,
        notes,
        model_names,
    )


@dataclass(frozen=True)
class ExportPreview:
    """What an export with these options would write, before it reads a single image."""

    counts: dict[str, dict[str, int]]  # split → class → n
    error: str | None = None  # the options cannot be exported as they are (a reason)

    @property
    def total(self) -> int:
        return sum(sum(row.values()) for row in self.counts.values())


def preview_export(library: Library, options: ExportOptions) -> ExportPreview:
    """Select and split as `export_dataset` would, without touching a file: counts per split
    and class for the export dialog. Items whose source has vanished or changed are only
    found (and left out) by the export itself, so its counts can come out lower."""
    empty: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    try:
        if not 0.0 <= options.val_fraction <= 1.0:
            raise ExportError("the validation fraction must be between 0 and 1")
        decisions = [d for d in select_decisions(library, options) if _HASH.fullmatch(d.hash)]
    except ExportError as exc:
        return ExportPreview(empty, str(exc))
    classes = class_names(library, decisions)
    by_class: dict[str, list[str]] = {name: [] for name in classes.values()}
    for decision in decisions:
        assert decision.label is not None
        by_class[classes[decision.label]].append(decision.hash)
    val = split_val(by_class, options.val_fraction, options.seed)
    counts = {split: {name: 0 for name in classes.values()} for split in SPLITS}
    for name, hashes in by_class.items():
        for digest in hashes:
            counts["val" if digest in val else "train"][name] += 1
    return ExportPreview(counts)
