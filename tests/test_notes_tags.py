"""Notes on decisions and tags on contents: stored append-only, shown, filtered, exported."""

from __future__ import annotations

import csv
import json

import pytest

from nsfw_desk.core.export import ExportOptions, export_dataset
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.synthetic import write_photo


def test_a_note_is_stored_with_its_decision(library):
    reviews = ReviewStore(library)
    reviews.decide([DecisionInput("h1")], "unsafe", reviewer="ann", threshold=0.5)
    reviews.decide(
        [DecisionInput("h1")], "unsafe", reviewer="ann", threshold=0.5, note="  looks\nunder 18 "
    )
    history = reviews.history("h1")
    assert [(d.label, d.note) for d in history] == [("unsafe", None), ("unsafe", "looks under 18")]
    assert reviews.current_labels() == {"h1": "unsafe"}  # a note changes no label
    # A note on an unreviewed item keeps it unreviewed (a NULL label is no label).
    reviews.decide([DecisionInput("h2")], None, reviewer="ann", threshold=0.5, note="ask Bo")
    assert reviews.current_labels() == {"h1": "unsafe"}
    assert reviews.latest_notes() == {"h1": "looks under 18", "h2": "ask Bo"}
    # A later decision without a note keeps the latest note as the item's note.
    reviews.decide([DecisionInput("h1")], "safe", reviewer="ann", threshold=0.5)
    assert reviews.latest_notes(["h1"]) == {"h1": "looks under 18"}


def test_tags_are_append_only_with_history(library):
    reviews = ReviewStore(library)
    assert reviews.set_tag(["h1", "h2"], " Escalate ", added=True, reviewer="ann") == "escalate"
    reviews.set_tag(["h1"], "minor?", added=True, reviewer="ann")
    reviews.set_tag(["h2"], "escalate", added=False, reviewer="bo")
    assert reviews.tags() == {"h1": ["escalate", "minor?"]}
    assert reviews.tags(["h2", "h3"]) == {}
    assert reviews.tag_counts() == {"escalate": 1, "minor?": 1}
    reviews.set_tag(["h2"], "escalate", added=True, reviewer="bo")
    assert reviews.tags(["h2"]) == {"h2": ["escalate"]}
    with pytest.raises(ValueError):
        reviews.set_tag(["h1"], "   ", added=True, reviewer="ann")
    with pytest.raises(Exception, match="append-only"):
        library.db.execute("DELETE FROM tags")


def test_notes_and_tags_are_exported(tmp_path, library, loaded_model):
    root = tmp_path / "photos"
    for i in range(4):
        write_photo(root / f"p{i}.jpg", (64, 48), seed=300 + i)
    found = scan_folder(root, loaded_model, library, keep_outcomes=True).outcomes
    items = [DecisionInput(o.hash, loaded_model.model_id, o.score, o.path) for o in found]
    reviews = ReviewStore(library)
    reviews.decide(items, "unsafe", reviewer="ann", threshold=0.5)
    reviews.decide(items[:1], "unsafe", reviewer="ann", threshold=0.5, note="check; twice")
    reviews.set_tag([items[0].hash], "escalate", added=True, reviewer="ann")
    reviews.set_tag([items[0].hash], "minor?", added=True, reviewer="ann")
    out = tmp_path / "out"
    export_dataset(library, ExportOptions(out=out))
    lines = (out / "metadata.jsonl").read_text("utf-8").splitlines()
    rows = {r["hash"]: r for r in map(json.loads, lines)}
    assert rows[items[0].hash]["note"] == "check; twice"
    assert rows[items[0].hash]["tags"] == ["escalate", "minor?"]
    assert rows[items[1].hash]["note"] == "" and rows[items[1].hash]["tags"] == []
    with (out / "labels.csv").open(newline="") as fh:
        csv_rows = {r["hash"]: r for r in csv.DictReader(fh)}
    assert csv_rows[items[0].hash]["tags"] == "escalate; minor?"
    assert csv_rows[items[0].hash]["note"] == "check; twice"
