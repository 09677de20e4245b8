"""Several reviewers: merge, conflicts and their resolution, assign, agreement (core/team.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, main
from nsfw_desk.core import team
from nsfw_desk.core.review import Decision, DecisionInput, ReviewStore
from nsfw_desk.core.store import MIGRATIONS, Library, ScoredFile

H = [f"{i:064x}" for i in range(1, 9)]  # content hashes


def _files(library: Library, hashes) -> None:
    """File rows for these contents (no score): what a listing of the folder leaves."""
    library.record_scored(
        [ScoredFile(Path(f"/photos/{h[-4:]}.jpg"), 10, 1, h) for h in hashes], None
    )


def _decide(library: Library, reviewer: str, labels: dict[str, str | None], score=0.9):
    reviews = ReviewStore(library)
    return reviews.apply_labels(
        [(DecisionInput(h, "m", score), label) for h, label in labels.items()],
        reviewer=reviewer,
        threshold=0.5,
    )


@pytest.fixture
def two_reviewers(tmp_path):
    """alice's library (H0..H5 on disk) and bob's, with overlapping decisions."""
    alice = Library(tmp_path / "alice.sqlite")
    bob = Library(tmp_path / "bob.sqlite")
    _files(alice, H[:6])
    _files(bob, H)
    _decide(alice, "alice", {H[0]: "unsafe", H[1]: "safe", H[2]: "unsafe"})
    _decide(bob, "bob", {H[0]: "unsafe", H[1]: "unsafe", H[3]: "safe", H[7]: "safe"})
    yield alice, bob
    alice.close()
    bob.close()


def test_merge_keeps_reviewer_and_time_and_finds_the_conflicts(two_reviewers):
    alice, bob = two_reviewers
    bob_log = {d.hash: d for d in ReviewStore(bob).all_decisions()}
    bob.close()
    report = team.merge_library(alice, bob.path)
    assert (report.seen, report.added) == (4, 4)
    assert report.reviewers == {"bob": 4}
    assert report.unknown_contents == 1  # H7: no file here; kept, counted, not invented
    assert alice.hashes_with_files([H[7]]) == set()
    reviews = ReviewStore(alice)
    merged = [d for d in reviews.all_decisions() if d.reviewer == "bob"]
    assert {d.hash: d.decided_at for d in merged} == {h: d.decided_at for h, d in bob_log.items()}
    assert all(d.merged_from == report.source_id for d in merged)
    assert team.conflicts(reviews) == {H[1]: {"alice": "safe", "bob": "unsafe"}}  # H0 agrees
    assert team.conflicts(reviews, [H[1], H[5]]) == team.conflicts(reviews)  # just these
    assert team.conflicts(reviews, [H[0], H[3]]) == {}


def test_merging_twice_adds_nothing_and_a_copy_merged_back_adds_only_what_is_new(
    two_reviewers, tmp_path
):
    alice, bob = two_reviewers
    bob.close()
    team.merge_library(alice, bob.path)
    count = len(ReviewStore(alice).all_decisions())
    again = team.merge_library(alice, bob.path)
    assert (again.seen, again.added) == (4, 0)
    assert len(ReviewStore(alice).all_decisions()) == count
    # bob merges alice's (which holds bob's own decisions): only alice's come in, once
    with Library(bob.path) as bob_again:
        back = team.merge_library(bob_again, alice.path)
        assert back.added == 3 and back.reviewers == {"alice": 3}
        assert len(ReviewStore(bob_again).all_decisions()) == count


def test_the_moderators_decision_resolves_a_conflict_and_undo_brings_it_back(two_reviewers):
    alice, bob = two_reviewers
    bob.close()
    team.merge_library(alice, bob.path)
    reviews = ReviewStore(alice)
    assert H[1] in team.conflicts(reviews)
    ids = _decide(alice, "alice", {H[1]: "safe"})  # alice looks again and keeps "safe"
    assert team.conflicts(reviews) == {}
    assert reviews.current_labels([H[1]]) == {H[1]: "safe"}
    reviews.revert(ids, reviewer="alice", threshold=0.5)
    assert H[1] in team.conflicts(reviews)
    # a third person (the moderator) resolves it too
    _decide(alice, "mod", {H[1]: "unsafe"})
    assert team.conflicts(reviews) == {}


def test_reviewers_labels_are_their_latest_by_time():
    d = [
        Decision(1, H[0], "unsafe", "a", "2026-01-01T10:00:00.000Z", None, None, None, None, None),
        Decision(2, H[0], "safe", "a", "2026-01-01T09:00:00.000Z", None, None, None, None, None),
        Decision(3, H[0], "safe", "b", "2026-01-01T11:00:00.000Z", None, None, None, None, None),
        Decision(4, H[1], None, "b", "2026-01-01T11:00:00.000Z", None, None, None, None, None),
    ]
    assert team.reviewer_labels(d) == {H[0]: {"a": "unsafe", "b": "safe"}}


def test_merge_leaves_care_stats_behind_unless_asked(two_reviewers):
    alice, bob = two_reviewers
    bob.add_care("bob", "2026-01-01", reveals=3, reveal_ms=4500, flagged_reviewed=2)
    bob.close()
    team.merge_library(alice, bob.path)
    assert alice.care_totals() == []
    report = team.merge_library(alice, bob.path, include_care=True)
    assert report.care_rows == 1
    team.merge_library(alice, bob.path, include_care=True)  # again: replaced, not added
    assert alice.care_totals() == [("bob", "2026-01-01", 3, 4500, 2, 0)]


def test_assign_is_deterministic_honours_the_overlap_and_is_stable_when_a_reviewer_joins():
    hashes = [f"{i:064x}" for i in range(4000)]
    rows = team.assign_contents(hashes, ["a", "b", "c"], 0.1)
    assert rows == team.assign_contents(reversed(hashes), ["c", "a", "b"], 0.1)
    per_hash: dict[str, list[str]] = {}
    for h, r in rows:
        per_hash.setdefault(h, []).append(r)
    assert set(per_hash) == set(hashes)
    twice = sum(len(r) == 2 for r in per_hash.values())
    assert abs(twice / len(hashes) - 0.1) < 0.02
    assert all(len(set(r)) == len(r) for r in per_hash.values())
    firsts = [r[0] for r in per_hash.values()]
    assert all(abs(firsts.count(name) / len(hashes) - 1 / 3) < 0.03 for name in "abc")
    # rendezvous: a fourth reviewer takes only contents from others, about a quarter
    grown = dict((h, r) for h, r in team.assign_contents(hashes, ["a", "b", "c", "d"], 0))
    moved = [h for h in hashes if grown[h] != per_hash[h][0]]
    assert all(grown[h] == "d" for h in moved)
    assert abs(len(moved) / len(hashes) - 0.25) < 0.03


def test_assign_stores_the_split_and_rerunning_is_stable(tmp_path, capsys):
    db = tmp_path / "lib.sqlite"
    with Library(db) as library:
        _files(library, H)
    argv = ["assign", "--reviewers", "ann,ben", "--overlap", "0.5", "--db", str(db), "--json"]
    assert main(argv) == EXIT_OK
    first = json.loads(capsys.readouterr().out)
    with Library(db) as library:
        stored = library.assignments()
    assert main(argv) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == first
    with Library(db) as library:
        assert library.assignments() == stored
        assert {h for h, _ in stored} == set(H)
        mine = {h for h, r in library.assignments("ann")}
    assert mine == {h for h, r in stored if r == "ann"}
    assert first["contents"] == len(H)
    assert sum(first["per_reviewer"].values()) == len(H) + first["overlap"]
    assert main(["assign", "--reviewers", " , ", "--db", str(db)]) == EXIT_USAGE


def test_cohen_kappa_against_a_hand_computed_value():
    # 10 items: both unsafe 4, both safe 3, a unsafe/b safe 2, a safe/b unsafe 1.
    a = ["unsafe"] * 4 + ["safe"] * 3 + ["unsafe"] * 2 + ["safe"]
    b = ["unsafe"] * 4 + ["safe"] * 3 + ["safe"] * 2 + ["unsafe"]
    # p_o = 7/10; a: 6 unsafe 4 safe; b: 5 unsafe 5 safe; p_e = .6*.5 + .4*.5 = 0.5
    assert team.cohen_kappa(a, b) == pytest.approx((0.7 - 0.5) / (1 - 0.5))  # 0.4
    assert team.cohen_kappa(["safe"] * 3, ["safe"] * 3) is None  # undefined, not 1 or 0
    assert team.cohen_kappa(["safe", "unsafe"], ["unsafe", "safe"]) == pytest.approx(-1.0)


def _at(minute: float) -> str:
    whole = int(minute)
    seconds = round((minute - whole) * 60)
    return f"2026-03-02T{9 + whole // 60:02d}:{whole % 60:02d}:{seconds:02d}.000Z"


def test_agreement_command_pairs_corrections_and_pace(tmp_path, capsys):
    a = ["unsafe"] * 4 + ["safe"] * 3 + ["unsafe"] * 2 + ["safe"]
    b = ["unsafe"] * 4 + ["safe"] * 3 + ["safe"] * 2 + ["unsafe"]
    rows = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        # alice decides one a minute (the model at 0.9, threshold 0.5: flagged), with a
        # 30-minute pause after the fifth; bob all within two minutes, no model score.
        minute = i + (30 if i >= 5 else 0)
        rows.append(
            Decision(0, H[0][:-2] + f"{i:02d}", x, "alice", _at(minute), "m", 0.9, 0.5, None, None)
        )
        rows.append(
            Decision(0, H[0][:-2] + f"{i:02d}", y, "bob", _at(i / 5), None, None, None, None, None)
        )
    db = tmp_path / "lib.sqlite"
    with Library(db) as library:
        ReviewStore(library).merge_decisions(rows, "elsewhere")
    assert main(["agreement", "--db", str(db), "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    (pair,) = result["pairs"]
    assert pair["reviewers"] == ["alice", "bob"]
    assert (pair["both"], pair["agree"], pair["percent"]) == (10, 7, 70.0)
    assert pair["kappa"] == pytest.approx(0.4)
    alice, bob = result["reviewers"]
    assert (alice["decisions"], alice["corrections"], alice["judged"]) == (10, 4, 10)
    assert alice["sessions"] == 2
    assert alice["active_s"] == 8 * 60  # 4 + 4 one-minute steps; the pause not counted
    assert alice["per_hour"] == pytest.approx(60.0)
    assert (bob["decisions"], bob["corrections"], bob["judged"]) == (10, 0, 0)
    assert bob["per_hour"] == pytest.approx(9 / (9 * 12 / 3600))
    assert result["conflicts"] == 3
    assert main(["agreement", "--db", str(db)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "alice + bob\t10\t70.0%\t0.400" in out


def test_merge_command_reports_and_refuses_what_it_cannot_use(two_reviewers, capsys):
    alice, bob = two_reviewers
    alice.close()
    bob.close()
    assert main(["merge", str(bob.path), "--db", str(alice.path)]) == EXIT_OK
    captured = capsys.readouterr()
    assert "4 of 4 decisions added (bob 4) on 4 images" in captured.out
    assert "1 of those images have no file in this library" in captured.out
    assert "1 conflict" in captured.err
    assert main(["merge", str(bob.path), "--db", str(alice.path)]) == EXIT_OK
    assert "0 of 4 decisions added" in capsys.readouterr().out
    missing = bob.path.with_name("nobody.sqlite")
    assert main(["merge", str(missing), "--db", str(alice.path)]) == EXIT_USAGE
    assert "no library at" in capsys.readouterr().err
    assert main(["merge", str(alice.path), "--db", str(alice.path)]) == EXIT_USAGE


def test_care_stats_add_up_per_day_and_the_library_stays_owner_only(library):
    library.add_care("ann", "2026-01-02", reveals=1, reveal_ms=1200)
    library.add_care("ann", "2026-01-02", reveals=1, reveal_ms=800, review_ms=60_000)
    library.add_care("ann", "2026-01-03", flagged_reviewed=4)
    assert library.care_totals("ann", "2026-01-02") == [("ann", "2026-01-02", 2, 2000, 0, 60_000)]
    assert len(library.care_totals("ann")) == 2
    assert stat.S_IMODE(os.stat(library.path).st_mode) == 0o600
    assert library.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_readme_recipe_runs_as_written(tmp_path, monkeypatch, capsys):
    """The commands of the README's "Several reviewers" section, in order."""
    import re
    import shlex

    text = (Path(__file__).parents[1] / "README.md").read_text("utf-8")
    start = text.index("## Several reviewers")
    section = text[start : text.index("\n## ", start + 1)]
    commands = [
        line
        for body in re.findall(r"```sh\n(.*?)```", section, re.S)
        for line in body.splitlines()
        if line
    ]
    assert [c.split()[1] for c in commands] == ["assign", "merge", "agreement"]
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "library.sqlite"
    with Library(db) as mine:
        _files(mine, H)
        _decide(mine, "alice", {H[0]: "unsafe", H[1]: "safe"})
    for name, labels in (("bob", {H[0]: "unsafe"}), ("carol", {H[1]: "unsafe"})):
        (tmp_path / name).mkdir()
        with Library(tmp_path / name / "library.sqlite") as other:
            _decide(other, name, labels)
    for command in commands:
        assert main(shlex.split(command)[1:] + ["--db", str(db)]) == EXIT_OK, command
    out = capsys.readouterr().out
    assert "alice + bob\t1\t100.0%\t-" in out  # one shared image, one label: kappa undefined
    assert "alice + carol\t1\t0.0%" in out
    with Library(db) as mine:
        assert len(mine.assignments()) >= len(H)
        assert team.conflicts(ReviewStore(mine)) == {H[1]: {"alice": "safe", "carol": "unsafe"}}


# --- the AI-generated label (issue 13) travels with merge ------------------------------------


def _ai(library: Library, reviewer: str, values: dict[str, bool | None], score=0.7):
    return ReviewStore(library).apply_ai_labels(
        [(DecisionInput(h, "ai-model", score), value) for h, value in values.items()],
        reviewer=reviewer,
        threshold=0.6,
    )


def test_merge_carries_ai_labels_with_reviewer_and_time_idempotently(two_reviewers):
    alice, bob = two_reviewers
    _ai(alice, "alice", {H[0]: True, H[1]: False})
    _ai(bob, "bob", {H[0]: True, H[1]: True, H[3]: False})
    _ai(bob, "bob", {H[3]: None})  # bob cleared it again: the clear travels too
    bob_rows = ReviewStore(bob).all_ai_labels()
    bob.close()
    report = team.merge_library(alice, bob.path)
    assert (report.ai_seen, report.ai_added) == (4, 4)
    assert report.ai_reviewers == {"bob": 4}
    reviews = ReviewStore(alice)
    merged = [r for r in reviews.all_ai_labels() if r.reviewer == "bob"]
    keep = ("hash", "generated", "decided_at", "model_id", "score", "threshold")
    assert [tuple(getattr(r, k) for k in keep) for r in merged] == [
        tuple(getattr(r, k) for k in keep) for r in bob_rows
    ]
    assert all(r.merged_from == report.source_id and r.undo_of is None for r in merged)
    assert team.ai_conflicts(reviews) == {H[1]: {"alice": "real", "bob": "AI"}}
    count = len(reviews.all_ai_labels())
    again = team.merge_library(alice, bob.path)
    assert (again.ai_seen, again.ai_added, again.added) == (4, 0, 0)
    assert len(reviews.all_ai_labels()) == count
    # bob merges alice's back: only alice's two rows come in
    with Library(bob.path) as bob_again:
        back = team.merge_library(bob_again, alice.path)
        assert (back.ai_added, back.ai_reviewers) == (2, {"alice": 2})
        assert len(ReviewStore(bob_again).all_ai_labels()) == count


def test_an_ai_label_conflict_is_resolved_by_the_moderators_ai_label(two_reviewers):
    alice, bob = two_reviewers
    _ai(alice, "alice", {H[2]: True, H[1]: True})
    _ai(bob, "bob", {H[2]: False, H[1]: True})
    bob.close()
    team.merge_library(alice, bob.path)
    reviews = ReviewStore(alice)
    assert team.ai_conflicts(reviews) == {H[2]: {"alice": "AI", "bob": "real"}}
    assert team.ai_conflicts(reviews, [H[1]]) == {}
    # The desk's Conflicts filter: both kinds, one content in both says both labels.
    assert team.desk_conflicts(reviews) == {
        H[1]: {"alice": "safe", "bob": "unsafe"},
        H[2]: {"alice": "AI", "bob": "real"},
    }
    _ai(alice, "bob", {H[1]: False})  # bob, at alice's desk, now says real on H1 too
    assert team.desk_conflicts(reviews, [H[1]]) == {
        H[1]: {"alice": "safe + AI", "bob": "unsafe + real"}
    }
    _ai(alice, "bob", {H[1]: True})  # and takes it back: no AI conflict on H1
    ids = _ai(alice, "mod", {H[2]: False})  # the moderator's G/R resolves it
    assert team.ai_conflicts(reviews) == {}
    assert team.conflicts(reviews) == {H[1]: {"alice": "safe", "bob": "unsafe"}}  # untouched
    reviews.revert_ai(ids, reviewer="mod")
    assert H[2] in team.ai_conflicts(reviews)
    assert team.agreement(alice).ai_conflicts == 1


def test_merge_and_agreement_commands_report_ai_labels(two_reviewers, capsys):
    alice, bob = two_reviewers
    _ai(alice, "alice", {H[0]: True, H[1]: True, H[2]: False})
    _ai(bob, "bob", {H[0]: True, H[1]: False, H[2]: False})
    alice.close()
    bob.close()
    assert main(["merge", str(bob.path), "--db", str(alice.path)]) == EXIT_OK
    captured = capsys.readouterr()
    assert "4 of 4 decisions added (bob 4)" in captured.out
    assert "and 3 of 3 AI-generated labels (bob 3) on 5 images" in captured.out
    assert "1 conflict " in captured.err and "1 AI-generated-label conflict " in captured.err
    assert main(["merge", str(bob.path), "--db", str(alice.path)]) == EXIT_OK
    assert "0 of 4 decisions added and 0 of 3 AI-generated labels" in capsys.readouterr().out
    assert main(["agreement", "--db", str(alice.path), "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    (pair,) = result["ai_pairs"]
    assert (pair["reviewers"], pair["both"], pair["agree"]) == (["alice", "bob"], 3, 2)
    assert pair["kappa"] == pytest.approx(
        team.cohen_kappa(["AI", "AI", "real"], ["AI", "real", "real"])
    )
    assert result["ai_conflicts"] == 1
    assert main(["agreement", "--db", str(alice.path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "AI-generated label: pair\tboth\tagree\tkappa" in out
    assert "alice + bob\t3\t66.7%" in out
