"""Arguments an audit found taken without a word: a PDQ quality above 100 (every hash left
out, silently) and a reviewer named twice in `assign` (counted as two reviewers)."""

from __future__ import annotations

import pytest
from test_train_cli import decided  # noqa: F401 (a fixture)

from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, main


@pytest.mark.parametrize("quality", ["101", "-1"])
def test_dupes_refuses_a_quality_outside_pdqs_range(quality, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["dupes", "--min-quality", quality, "--db", str(tmp_path / "library.sqlite")])
    assert stop.value.code == EXIT_USAGE
    assert "argument --min-quality: must be 0 to 100" in capsys.readouterr().err


def test_assign_counts_a_reviewer_named_twice_once(decided, capsys):  # noqa: F811
    db, _ = decided
    assert main(["assign", "--reviewers", "ann,ann,bob", "--db", str(db)]) == EXIT_OK
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == ["ann", "bob"]
    assert "24 images assigned to 2 reviewers" in captured.err


def test_map_prefix_replaces_whole_folders_only_and_wants_a_target():
    """FROM matched any byte prefix: /data/img also turned /data/images/x.jpg into
    TO/ages/x.jpg; an empty TO made every path relative to nowhere."""
    from nsfw_desk.core.cluster_import import PrefixMap, map_path

    maps = [PrefixMap.parse("/data/img=/srv/img")]
    assert map_path(b"/data/img/x.jpg", maps) == b"/srv/img/x.jpg"
    assert map_path(b"/data/img", maps) == b"/srv/img"
    assert map_path(b"/data/images/x.jpg", maps) == b"/data/images/x.jpg"
    slashed = [PrefixMap.parse("s3://bucket/archive/=/home/me/archive")]
    assert map_path(b"s3://bucket/archive/a/x.jpg", slashed) == b"/home/me/archive/a/x.jpg"
    assert map_path(b"s3://bucket/archive2/x.jpg", slashed) == b"s3://bucket/archive2/x.jpg"
    with pytest.raises(ValueError, match="both non-empty"):
        PrefixMap.parse("/data=")
