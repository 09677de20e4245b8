"""Remote sources of cluster-scan without Ray running: reaching and listing a URI, reading
listed files into rows (one per file, errors with reasons), and `import` of URI results."""

from __future__ import annotations

import os

import pytest

pa = pytest.importorskip("pyarrow")
fsspec = pytest.importorskip("fsspec")

import pyarrow.fs as pafs  # noqa: E402

from nsfw_desk.core import cluster_source as sources  # noqa: E402
from nsfw_desk.core.images import ErrorKind  # noqa: E402


class Flaky(pafs.FSSpecHandler):
    """fsspec's in-memory filesystem, where one file cannot be opened (access denied)."""

    def open_input_stream(self, path):
        if path.endswith("denied.jpg"):
            raise PermissionError(f"Access Denied: {path}")
        return super().open_input_stream(path)


@pytest.fixture
def memory_fs():
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem()
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    for name, data in {
        "bucket/photos/a/one.jpg": b"\xff\xd8 one",
        "bucket/photos/b/two.PNG": b"two",
        "bucket/photos/denied.jpg": b"three",
        "bucket/photos/big.jpg": b"x" * 100,
        "bucket/photos/.hidden/four.jpg": b"four",
        "bucket/photos/notes.txt": b"not an image suffix",
    }.items():
        fs.pipe(name, data)
    yield pafs.PyFileSystem(Flaky(fs))
    fs.store.clear()


def test_a_listing_keeps_image_files_and_reports_the_too_large(memory_fs):
    source = sources.open_source("bucket/photos", memory_fs)
    files, errors = sources.list_files(source, include_hidden=False, max_bytes=50)
    assert [f.uri for f in files] == [
        "bucket/photos/a/one.jpg",
        "bucket/photos/b/two.PNG",
        "bucket/photos/denied.jpg",
    ]
    assert [f.size for f in files] == [len(b"\xff\xd8 one"), 3, 5]
    (big,) = errors
    assert (big.uri, big.kind) == ("bucket/photos/big.jpg", ErrorKind.TOO_LARGE)
    assert big.message == "file too large: 100 bytes (limit 50 bytes)" and big.size == 100
    hidden, _ = sources.list_files(source, include_hidden=True, max_bytes=50)
    assert "bucket/photos/.hidden/four.jpg" in [f.uri for f in hidden]


def test_each_listed_file_reads_into_one_row_its_failure_included(memory_fs):
    source = sources.open_source("bucket/photos", memory_fs)
    files, _ = sources.list_files(source, include_hidden=False, max_bytes=50)
    gone = sources.RemoteFile("bucket/photos/gone.jpg", "bucket/photos/gone.jpg", 9, 1)
    rows = [
        row
        for table in sources.read_listed(memory_fs, [*files, gone], max_bytes=4)
        for row in table.to_pylist()
    ]
    assert [r["path"] for r in rows] == [f.uri for f in files] + [gone.uri]
    one, two, denied, vanished = rows
    assert one["error_kind"] == ErrorKind.TOO_LARGE and one["data"] is None  # grew past 4
    assert two["data"] == b"two" and two["error_kind"] is None and two["size"] == 3
    assert denied["error_kind"] == ErrorKind.UNREADABLE and "Access Denied" in denied["error"]
    assert vanished["error_kind"] == ErrorKind.VANISHED and vanished["size"] == 9


def test_results_name_files_by_the_uri_given(tmp_path):
    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "photos" / "a" / "x.jpg").write_bytes(b"x")
    (tmp_path / "photos" / ".h.jpg").write_bytes(b"x")
    os.mkfifo(tmp_path / "photos" / "pipe.jpg")
    uri = f"file://{tmp_path}/photos/"
    source = sources.open_source(uri)
    files, errors = sources.list_files(source, include_hidden=False, max_bytes=10)
    assert [f.uri for f in files] == [f"file://{tmp_path}/photos/a/x.jpg"]
    # A FIFO is an error of the listing: never opened, so it cannot hang a read task.
    assert [(e.uri, e.kind) for e in errors] == [
        (f"file://{tmp_path}/photos/pipe.jpg", ErrorKind.UNREADABLE)
    ]


def test_a_source_that_cannot_be_used_says_why(tmp_path):
    with pytest.raises(sources.SourceError, match="No filesystem for nope://"):
        sources.open_source("nope://bucket/photos")
    with pytest.raises(sources.SourceError, match="does not exist"):
        sources.open_source(f"file://{tmp_path}/missing")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / os.fsdecode(b"caf\xe9.jpg")).write_bytes(b"x")
    source = sources.open_source(f"file://{tmp_path}/odd")
    with pytest.raises(sources.SourceError, match="not valid UTF-8.*plain path"):
        sources.list_files(source, include_hidden=False, max_bytes=10)


def test_a_source_that_never_answers_is_a_message_not_a_hang(memory_fs):
    import threading

    never = threading.Event()

    class Silent(pafs.FSSpecHandler):
        def get_file_info(self, paths):
            never.wait(30)  # a credential lookup or a connection that does not answer
            return super().get_file_info(paths)

    from fsspec.implementations.memory import MemoryFileSystem

    silent = pafs.PyFileSystem(Silent(MemoryFileSystem()))
    with pytest.raises(sources.SourceError, match=r"in 1 s: no answer.*credentials"):
        sources.open_source("bucket/photos", silent, timeout_s=1)
    never.set()


def test_cluster_scan_of_an_unreachable_s3_uri_says_so(tmp_path, model_dir, capsys, monkeypatch):
    """Parsed as a URI, tried, and a message: a local port that refuses (no outside network,
    no credential lookup), not a hang or a traceback."""
    pytest.importorskip("ray")
    from nsfw_desk.cli import EXIT_USAGE, main

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    uri = "s3://bucket/prefix?region=us-east-1&scheme=http&endpoint_override=127.0.0.1:9"
    out = tmp_path / "results"
    status = main(["cluster-scan", uri, "--out", str(out), "--model", str(model_dir)])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE, err
    assert "Cannot reach s3://bucket/prefix" in err and "credentials" in err
    assert "Traceback" not in err and not out.exists()
