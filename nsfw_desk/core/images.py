"""Finding image files and decoding them robustly: one read, one decode, every mode to RGB.

Whatever a folder holds, each candidate file ends either as a `DecodedImage` or as an
`ImageError` whose `kind` and message say why; nothing here lets an exception of Pillow's or
the OS's escape unexplained.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from nsfw_desk.core.units import format_size

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".apng",
        ".webp",
        ".gif",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".mpo",
    }
)
# Formats Pillow may open for us. A closed list: some Pillow plugins (EPS) run external
# programs, and a moderation tool must never do that for an untrusted file.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF")  # JPEG covers MPO
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: larger photos are rare, larger headers are attacks
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
THUMBNAIL_SIZE = 256
THUMBNAIL_QUALITY = 85  # JPEG quality of stored thumbnails (core/gpu_prepare.py too)
# Progressive JPEGs have about 10 scans (a few dozen at most from custom encoders). Each scan
# walks every block of the picture again however few bytes it takes, so a 1 MB file of 20,000
# tiny scans costs a 12-MP decode minutes of CPU (measured: 17 s for 20,000 on 2 cores).
MAX_JPEG_SCANS = 256
DRAFT_MARGIN = 1.5

# We check each image's size against our own limit (DEFAULT_MAX_PIXELS) before decoding,
# which is what Pillow's global bomb check guards; its warning would only be noise.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey half-image


class ErrorKind:
    """Reasons a file has no score; stored as text, shown to the moderator."""

    NOT_AN_IMAGE = "not_an_image"
    DECODE_ERROR = "decode_error"
    UNREADABLE = "unreadable"
    VANISHED = "vanished"
    TOO_LARGE = "too_large"

    ALL = frozenset({NOT_AN_IMAGE, DECODE_ERROR, UNREADABLE, VANISHED, TOO_LARGE})
    # Errors that depend only on the file's bytes: safe to remember until the file changes.
    CONTENT_BOUND = frozenset({NOT_AN_IMAGE, DECODE_ERROR, TOO_LARGE})


BROKEN_LINK = "broken symbolic link"


def missing_reason(path: Path, otherwise: str) -> str:
    """Why a file that cannot be found is missing (ErrorKind.VANISHED): a symbolic link whose
    target is gone says so wherever a command meets it (discovery, reading, `label` and
    `import-labels`), since restoring the target or deleting the link is what helps;
    `otherwise` for a name that is gone itself."""
    return BROKEN_LINK if os.path.islink(path) else otherwise


class ImageError(Exception):
    """A file that cannot be scored, with a reason a moderator can read."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class FileEntry:
    """A candidate file found by discovery, with the stat facts the cache is keyed on."""

    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FileError:
    """A file (or folder) that ended as an error rather than a result."""

    path: Path
    kind: str
    message: str
    size: int | None = None
    mtime_ns: int | None = None


@dataclass
class DiscoveryStats:
    """What discovery passed over, so a summary can say so instead of skipping silently."""

    ignored_not_images: int = 0
    ignored_hidden: int = 0
    links_already_seen: int = 0
    errors: list[FileError] = field(default_factory=list)
    # Folders that could not be opened or listed (an unplugged drive, a permission lost):
    # their contents are unknown, not gone.
    unlisted: list[Path] = field(default_factory=list)


@dataclass
class DecodedImage:
    """One decoded file: RGB pixels (maybe JPEG-draft reduced), original size and identity."""

    content_hash: str
    image: Image.Image
    width: int
    height: int
    format: str


def content_hash(data: bytes) -> str:
    """Identity of an image: BLAKE2b-256 of its bytes, hex."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def sniff_format(head: bytes) -> str | None:
    """Image format from the first bytes, or None."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def discover(
    root: Path,
    *,
    include_hidden: bool = False,
    stats: DiscoveryStats | None = None,
    never_open: Iterable[Path] = (),
) -> Iterator[FileEntry | FileError]:
    """Every image file under `root`, recursively, in a stable order.

    Candidates are files with an image suffix (any case) plus files whose first bytes say
    image whatever their name. Symlinked folders are followed, each real folder once.
    `never_open`: files passed over unread, as not images: the library this process has
    open (Library.own_files), when it lies under `root`. Reading its first bytes would close
    a descriptor of the file, and closing any descriptor drops every POSIX lock the process
    holds on it, SQLite's included: another program could then take the library for unused
    and delete its WAL under the desk.
    """
    stats = stats if stats is not None else DiscoveryStats()
    root = Path(root)
    seen_dirs: set[tuple[int, int]] = set()
    skipped = _file_keys(never_open)
    try:
        st = root.stat()
    except OSError as exc:
        error = FileError(root, ErrorKind.UNREADABLE, f"cannot open folder: {exc.strerror}")
        stats.errors.append(error)
        stats.unlisted.append(root)
        yield error
        return
    seen_dirs.add((st.st_dev, st.st_ino))
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            error = FileError(folder, ErrorKind.UNREADABLE, f"cannot list folder: {exc.strerror}")
            stats.errors.append(error)
            stats.unlisted.append(folder)
            yield error
            continue
        subfolders = []
        for entry in entries:
            if not include_hidden and _is_hidden(entry.name):
                stats.ignored_hidden += 1
                continue
            found = _classify(Path(entry.path), entry, seen_dirs, stats, skipped)
            if isinstance(found, Path):
                subfolders.append(found)
            elif found is not None:
                if isinstance(found, FileError):
                    stats.errors.append(found)
                yield found
        stack.extend(reversed(subfolders))


def _file_keys(paths: Iterable[Path]) -> set[tuple[int, int]]:
    """(device, inode) of each of `paths` that exists: the same file under any name."""
    keys = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        keys.add((st.st_dev, st.st_ino))
    return keys


def _classify(
    path: Path,
    entry: os.DirEntry,
    seen_dirs: set[tuple[int, int]],
    stats: DiscoveryStats,
    skipped: set[tuple[int, int]],
) -> Path | FileEntry | FileError | None:
    """A folder to walk, a candidate file, an error, or None for a non-image file."""
    image_suffix = path.suffix.lower() in IMAGE_SUFFIXES
    try:
        st = entry.stat(follow_symlinks=True)
    except FileNotFoundError:
        why = missing_reason(path, "file vanished during the scan")
        return FileError(path, ErrorKind.VANISHED, why) if image_suffix else None
    except OSError as exc:
        return (
            FileError(path, ErrorKind.UNREADABLE, f"cannot read file: {exc.strerror}")
            if image_suffix
            else None
        )
    if stat.S_ISDIR(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            stats.links_already_seen += 1
            return None
        seen_dirs.add(key)
        return path
    if not stat.S_ISREG(st.st_mode):
        if image_suffix:
            return FileError(
                path,
                ErrorKind.UNREADABLE,
                "not a regular file (device, FIFO or socket)",
                st.st_size,
                st.st_mtime_ns,
            )
        stats.ignored_not_images += 1
        return None
    if (st.st_dev, st.st_ino) in skipped or (not image_suffix and not _sniffs_as_image(path)):
        stats.ignored_not_images += 1
        return None
    return FileEntry(path, st.st_size, st.st_mtime_ns)


def _sniffs_as_image(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return sniff_format(fh.read(16)) is not None
    except OSError:
        return False


def read_file(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """All bytes of a regular file, read once (hash and decode share them)."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: a FIFO must not hang the scan
    except FileNotFoundError as exc:
        why = missing_reason(path, "file vanished before it could be read")
        raise ImageError(ErrorKind.VANISHED, why) from exc
    except IsADirectoryError as exc:
        raise ImageError(ErrorKind.UNREADABLE, "is a folder, not a file") from exc
    except OSError as exc:
        raise ImageError(ErrorKind.UNREADABLE, f"cannot open file: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(ErrorKind.UNREADABLE, "is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(ErrorKind.UNREADABLE, "not a regular file (device, FIFO or socket)")
        if st.st_size > max_bytes:
            raise ImageError(
                ErrorKind.TOO_LARGE,
                f"file too large: {format_size(st.st_size)} (limit {format_size(max_bytes)})",
            )
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 22))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise ImageError(ErrorKind.TOO_LARGE, "file grew past the size limit while read")
        return data
    except OSError as exc:
        raise ImageError(ErrorKind.UNREADABLE, f"read failed: {exc.strerror}") from exc
    finally:
        os.close(fd)


def decode(
    data: bytes, *, min_side: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image, int, int, str]:
    """RGB pixels of the first frame, upright, and the original (upright) width and height.

    `min_side` lets JPEG decode at 1/2, 1/4 or 1/8 scale (DCT draft) and other formats be
    box-reduced, as long as the shorter side stays at least `DRAFT_MARGIN × min_side`: the
    model's own (bicubic, antialiased) resize then always shrinks by 1.5× or more, which
    keeps the reduction's filter out of the scores (`nsfw-desk bench` prints the agreement
    with the model card's full decode as "max |Δp| vs card").
    """
    if not data:
        raise ImageError(ErrorKind.NOT_AN_IMAGE, "empty file (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError as exc:
        sniffed = sniff_format(data[:16])
        if sniffed:
            raise ImageError(ErrorKind.DECODE_ERROR, f"damaged {sniffed} header") from exc
        raise ImageError(ErrorKind.NOT_AN_IMAGE, "not an image (unrecognised content)") from exc
    except Exception as exc:  # Pillow raises many types for hostile headers
        raise ImageError(ErrorKind.DECODE_ERROR, f"cannot read image header: {exc}") from exc
    try:
        if im.format in ("JPEG", "MPO"):
            _check_scans(data)
        return _decode_opened(im, min_side, max_pixels)
    except ImageError:
        im.close()
        raise
    except MemoryError as exc:
        im.close()
        raise ImageError(ErrorKind.TOO_LARGE, "image too large to decode in memory") from exc
    except Exception as exc:
        im.close()
        raise ImageError(ErrorKind.DECODE_ERROR, f"cannot decode {im.format}: {exc}") from exc


def _check_scans(data: bytes) -> None:
    """Refuse a JPEG with more scans than any encoder writes (a decoding-time bomb).

    Start-of-scan markers are counted over the whole file: entropy-coded data never holds
    0xFFDA (a 0xFF there is always followed by 0x00 or a restart marker), so the count is
    exact but for the rare 0xFFDA inside a metadata segment, and the limit leaves room.
    """
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise ImageError(
            ErrorKind.DECODE_ERROR,
            f"JPEG with {scans:,} scans (limit {MAX_JPEG_SCANS}): refused, decoding it would "
            "take minutes",
        )


def _decode_opened(
    im: Image.Image, min_side: int, max_pixels: int
) -> tuple[Image.Image, int, int, str]:
    fmt = im.format or "?"
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(ErrorKind.DECODE_ERROR, f"invalid image size {width}×{height}")
    if width * height > max_pixels:
        raise ImageError(
            ErrorKind.TOO_LARGE,
            f"image too large: {width}×{height} = {width * height / 1e6:,.0f} MP "
            f"(limit {max_pixels / 1e6:,.0f} MP)",
        )
    orientation = _orientation(im)
    keep = math.ceil(min_side * DRAFT_MARGIN)
    if fmt in ("JPEG", "MPO") and min_side:
        im.draft("RGB", (keep, keep))
    im.load()
    pixels = to_rgb(im)
    if fmt not in ("JPEG", "MPO") and min_side:
        factor = min(pixels.size) // keep
        if factor >= 2:
            pixels = pixels.reduce(factor)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if orientation in range(2, 9):
        pixels = _apply_orientation(pixels, orientation)
    return pixels, width, height, fmt


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1-8, or 1 when absent or unreadable (a corrupt EXIF is not fatal)."""
    try:
        value = im.getexif().get(0x0112, 1)
        return value if isinstance(value, int) and 1 <= value <= 8 else 1
    except Exception:
        return 1


def _apply_orientation(im: Image.Image, orientation: int) -> Image.Image:
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }[orientation]
    return im.transpose(method)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha over white, 16-bit and float scaled, not clipped."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:  # a tRNS colour key is alpha too
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(im, dtype=np.float32)
        peak = float(values.max()) if values.size else 0.0
        if mode == "F" and peak <= 1.0:
            values = values * 255.0
        elif mode.startswith("I;16") or peak > 255:
            values = values / 257.0
        gray = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return im.convert("RGB")


def make_thumbnail(
    image: Image.Image, size: int = THUMBNAIL_SIZE, quality: int = THUMBNAIL_QUALITY
) -> bytes:
    """A JPEG no larger than `size` on its longer side, from already-decoded pixels."""
    scale = size / max(image.size)
    if scale < 1:
        target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=False)
    return out.getvalue()


def load_image(
    path: Path,
    *,
    min_side: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DecodedImage:
    """Read, hash and decode one file; raises `ImageError` with the reason it failed."""
    data = read_file(path, max_bytes=max_bytes)
    digest = content_hash(data)
    pixels, width, height, fmt = decode(data, min_side=min_side, max_pixels=max_pixels)
    return DecodedImage(digest, pixels, width, height, fmt)
