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
