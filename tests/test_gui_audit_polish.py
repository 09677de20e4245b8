"""What a moderator's day at the desk turned up, second round (an audit under a real X
server): each test fails without its fix."""

from __future__ import annotations

import shutil

import numpy as np
from desk import column, export_dialog, scan, settle, two_decided
from PySide6.QtCore import Qt
from test_gui_near_dupes import dupes_folder  # noqa: F401 (a fixture)
from test_gui_training import two_colour_folder  # noqa: F401 (a fixture)

from nsfw_desk.gui.grid import Role


def test_export_waits_for_a_change_after_it_has_written(qtbot, make_window, folder, tmp_path):
    """After an export the Export button stayed enabled (and the default for Return): a
    second click wrote the dataset again, over it with "Replace" on."""

    window = two_decided(qtbot, make_window, folder)
    dialog = export_dialog(qtbot, window)
    out = tmp_path / "dataset"
    dialog.out.setText(str(out))
    dialog.overwrite.setChecked(True)
    assert dialog.export_button.isEnabled()
    exports = []
    dialog.export_requested.connect(exports.append)
    dialog.export_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=30_000)
    assert dialog.report is not None and dialog.report.exported == 2, dialog.status.text()
    assert str(out) in dialog.status.text() and "export again" in dialog.status.text()
    # Written: no second export by a stray click or Return; Close is the default.
    assert not dialog.export_button.isEnabled()
    assert dialog.close_button.isDefault() and not dialog.export_button.isDefault()
    dialog.export_button.click()
    qtbot.keyClick(dialog, Qt.Key.Key_Return)
    assert len(exports) == 1 and not dialog.running
    # Another dataset asked for: Export is offered again; set back, withdrawn again.
    dialog.seed.setValue(7)
    assert dialog.export_button.isEnabled() and dialog.export_button.isDefault()
    dialog.seed.setValue(0)
    assert not dialog.export_button.isEnabled()
    assert "Done" in dialog.status.text()
    dialog.out.setText(str(tmp_path / "another"))
    assert dialog.export_button.isEnabled()
    dialog.export_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=30_000)
    assert len(exports) == 2 and (tmp_path / "another" / "metadata.jsonl").exists()
    assert not dialog.export_button.isEnabled()
    # An option touched while an export runs was not written: Export stays offered.
    dialog.out.setText(str(tmp_path / "third"))
    dialog.export_button.click()
    dialog.seed.setValue(3)
    qtbot.waitUntil(lambda: not dialog.running, timeout=30_000)
    assert len(exports) == 3 and exports[-1].seed == 0
    assert dialog.export_button.isEnabled() and "Options changed" in dialog.status.text()
    dialog.reject()


def test_a_failed_export_can_be_tried_again(qtbot, make_window, folder, tmp_path):
    """Only a written export waits for a change: a refused one keeps Export offered."""

    window = make_window()
    scan(qtbot, window, folder)
    window.decide("unsafe")
    settle(qtbot, window)
    out = tmp_path / "taken"
    out.mkdir()
    (out / "something.txt").write_text("mine")
    dialog = export_dialog(qtbot, window)
    dialog.out.setText(str(out))
    dialog.export_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=30_000)
    assert dialog.report is None and "exist" in dialog.status.text().lower()
    assert dialog.export_button.isEnabled()
    dialog.reject()


def _gone_rows(window, folder) -> list:
    return [p for p in column(window, Role.PATH) if p == folder.resolve()]


def test_a_deleted_folder_is_no_tile_and_no_file_on_rescan(qtbot, make_window, folder):
    """The scanned folder deleted under the desk came back as one more tile, "unreadable:
    cannot open folder", counted among the files ("6 flagged of 14 files · 2 errors")."""
    window = make_window()
    scan(qtbot, window, folder)
    listed, counts = window.results.rowCount(), window.results.counts()
    shutil.rmtree(folder)
    window.rescan()
    qtbot.waitUntil(lambda: not window.scanning, timeout=60_000)
    assert not _gone_rows(window, folder)
    assert window.results.rowCount() == listed  # the stored results, nothing more
    after = window.results.counts()
    assert (after.total, after.errors) == (counts.total, counts.errors)
    assert f"of {counts.total} files" in window.counts_label.text()
    text = window.status.text()
    assert str(folder.resolve()) in text and "cannot be opened" in text
    assert "showing the results stored before" in text


def test_a_folder_gone_before_its_first_scan_says_so_in_the_grid(
    qtbot, make_window, folder, tmp_path
):
    """With nothing stored (a library of its own), the grid said "This folder has no
    images" beside a tile for the folder itself."""
    window = make_window(library_path=tmp_path / "other.sqlite")
    window.folder = folder.resolve()  # as open_folder left it, just before the drive went
    shutil.rmtree(folder)
    window.rescan()
    qtbot.waitUntil(lambda: not window.scanning, timeout=60_000)
    assert window.results.rowCount() == 0 and not _gone_rows(window, folder)
    assert "nothing stored to show" in window.status.text()
    assert window.empty_hint.isVisible()
    assert "cannot be opened" in window.empty_hint.label.text()
    window.set_filter("unreviewed")  # the grid's message stays what it is
    window.set_filter("all")
    assert "cannot be opened" in window.empty_hint.label.text()


def test_a_deleted_folder_listed_without_a_model_is_said_too(
    qtbot, make_window, folder, tmp_path, model_dir
):
    """Without a model the status line said "Listed without a model: 1 file · 1 error"."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    shutil.copy(model_dir / "config.json", broken)
    window = make_window()
    window.model_override = str(broken)
    scan(qtbot, window, folder)
    listed = window.results.rowCount()
    shutil.rmtree(folder)
    window.rescan()
    qtbot.waitUntil(lambda: not window.scanning, timeout=60_000)
    assert window.results.rowCount() == listed and not _gone_rows(window, folder)
    assert "cannot be opened" in window.status.text()


def _names(window) -> list[str]:
    return [p.name for p in column(window, Role.PATH)]


def _labelled(window) -> set[str]:
    labels = column(window, Role.LABEL)
    return {p.name for p, lab in zip(column(window, Role.PATH), labels, strict=True) if lab}


def test_the_near_duplicates_offer_names_what_y_labels(qtbot, make_window, request):
    """U on an image auto-advanced onto one of its near-duplicates; the offer that came
    ("3 near-duplicates — label them unsafe too?") read as the current image's, and Y
    labelled that image, unseen as one of them, with the others."""
    window = make_window()
    scan(qtbot, window, request.getfixturevalue("dupes_folder"))
    window.set_sort("name")  # copy_large, copy_q60, copy_small, original, other_…
    window._select_row(_names(window).index("copy_large.jpg"))
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    assert window.grid.currentIndex().data(Role.PATH).name == "copy_q60.jpg"
    qtbot.waitUntil(window.offer.isVisible, timeout=10_000)
    text = window.offer.text.text()
    assert "3 near-duplicates of copy_large.jpg" in text
    assert "(this one, " in text  # the current one first, then the others
    assert "copy_small.png" in text and "original.jpg" in text
    named = set(window.offer.hashes)
    qtbot.keyClick(window.grid, Qt.Key.Key_Y)
    assert _labelled(window) == {"copy_large.jpg", "copy_q60.jpg", "copy_small.png", "original.jpg"}
    assert {h for h in column(window, Role.HASH) if window.results.label_of(h)} == named | {
        window.results.index(_names(window).index("copy_large.jpg")).data(Role.HASH)
    }
    assert "of copy_large.jpg unsafe" in window.statusBar().currentMessage()
    settle(qtbot, window)


def test_y_labels_nothing_once_the_current_item_is_not_the_offers(qtbot, make_window, request):
    """Y acted on the offer's list whatever was current by then: the current item moved
    without the offer going (a model reset moves it without a signal), and Y still
    labelled near-duplicates of an image the moderator had left."""
    window = make_window(auto_advance=False)
    scan(qtbot, window, request.getfixturevalue("dupes_folder"))
    window.set_sort("name")
    window._select_row(_names(window).index("original.jpg"))
    qtbot.keyClick(window.grid, Qt.Key.Key_S)
    qtbot.waitUntil(window.offer.isVisible, timeout=10_000)
    assert "of this one" not in window.offer.text.text()
    selection = window.grid.selectionModel()
    selection.blockSignals(True)  # moved without a currentChanged, as a reset does
    window._select_row(_names(window).index("other_0.jpg"))
    selection.blockSignals(False)
    qtbot.keyClick(window.grid, Qt.Key.Key_Y)
    assert not window.offer.isVisible()
    assert _labelled(window) == {"original.jpg"}
    assert "withdrawn" in window.statusBar().currentMessage()
    # Labelled meanwhile: Y leaves such an item as it is, and says so.
    window._select_row(_names(window).index("copy_large.jpg"))
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    qtbot.waitUntil(window.offer.isVisible, timeout=10_000)
    window._label_hashes(  # another way in (a group decision, the AI labeller) meanwhile
        [window.results.index(_names(window).index("copy_small.png")).data(Role.HASH)], "safe"
    )
    qtbot.keyClick(window.grid, Qt.Key.Key_Y)
    labels = dict(zip(_names(window), column(window, Role.LABEL), strict=True))
    assert labels["copy_small.png"] == "safe" and labels["copy_q60.jpg"] == "unsafe"
    assert "1 labelled meanwhile" in window.statusBar().currentMessage()
    settle(qtbot, window)


TRAINED_ID = "sha256:" + "ab12cd34" * 8
TRAINED_DIR = "/models/nsfw-sfw-trained-2026-11-26"


def _add_a_trained_detector(qtbot, window, model_dir, unsafe: float) -> None:
    """A fine-tuned copy of the model as the second detector, with stored scores `unsafe`
    for every scanned image (no training: the chips are what is tested)."""
    from nsfw_desk.core.store import Library, float32_blob

    hashes = {h for h in column(window, Role.HASH) if h}
    probabilities = float32_blob(np.array([unsafe, 1 - unsafe], dtype=np.float32))
    with Library(window.library_path) as library:
        library.register_model(
            TRAINED_ID,
            source=TRAINED_DIR,
            revision=None,
            architecture="test_vit",
            labels=["NSFW", "SFW"],
            unsafe_labels=["NSFW"],
        )
        library.record_model_scores(TRAINED_ID, [(h, unsafe, probabilities, None) for h in hashes])
    window.settings.detectors = [
        {"model": str(model_dir), "threshold": 0.5, "enabled": True},
        {"model": TRAINED_DIR, "threshold": 0.5, "enabled": True},
    ]
    window.detectors_view.load()
    qtbot.waitUntil(lambda: len(window.results.detectors) == 1, timeout=10_000)


def test_two_nsfw_detectors_chips_tell_them_apart(qtbot, make_window, folder, model_dir):
    """The default model and a fine-tuned copy of it both flag "NSFW": their two chips
    read "⚑NSFW 0.93" and "⚑NSFW 0.88", and nothing said which was which."""
    window = make_window()
    scan(qtbot, window, folder)
    _add_a_trained_detector(qtbot, window, model_dir, unsafe=0.75)
    row = next(i for i, h in enumerate(column(window, Role.HASH)) if h)
    chips = window.results.index(row).data(Role.CHIPS)
    primary, trained = chips[0][0], chips[1][0]
    assert trained == "NSFW trained"
    assert primary.startswith("NSFW ") and primary != trained  # the base: its weights' hash
    assert window.model_id.startswith("sha256:") and primary == f"NSFW {window.model_id[7:11]}"
    # Every place that names the second detector uses its chip's name.
    box = window.detectors_view.choice
    assert box.itemText(0).startswith("NSFW trained · nsfw-sfw-trained-2026-11-26")
    flagged_by = window.filter_box.itemText(window.filter_box.count() - 1)
    assert flagged_by.startswith("Flagged by NSFW trained (")
    tip = window.results.index(row).data(Qt.ItemDataRole.ToolTipRole)
    assert "\nNSFW trained 0.750 (threshold 0.50): nsfw-sfw-trained-2026-11-26" in tip


def test_chip_names_stay_plain_unless_two_would_read_the_same():
    from nsfw_desk.core.detector_columns import chip_names

    marqo = ("nsfw", "Marqo/nsfw-image-detection-384", "Marqo/nsfw-image-detection-384@0c26ec2")
    trained = ("nsfw", "nsfw-image-detection-384-trained-2026-11-26 (sha256:ab12)", TRAINED_ID)
    ai = ("ai-generated", "org/deepfake-detector", "org/deepfake-detector@0123456")
    assert chip_names([marqo]) == ["NSFW"]
    assert chip_names([marqo, ai]) == ["NSFW", "AI"]  # the common case: no noisier
    assert chip_names([marqo, trained, ai]) == ["NSFW Marqo", "NSFW trained", "AI"]
    # One hub model at two revisions: the revisions; nothing to go by: the places.
    other = ("nsfw", "Marqo/nsfw-image-detection-384", "Marqo/nsfw-image-detection-384@9f8e7d6")
    assert chip_names([marqo, other]) == ["NSFW 0c26", "NSFW 9f8e"]
    assert chip_names([("nsfw", "m", "m"), ("nsfw", "m", "m")]) == ["NSFW 1", "NSFW 2"]


def test_the_flaggers_line_stops_before_the_label_badge(qtbot, make_window, folder, model_dir):
    """With two chips' names on it ("⚑ NSFW 4156 · NSFW trained") the tile's flaggers
    line ran under the label's badge, "✖ UNSAFE", and both were unreadable."""
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QFont, QFontMetrics
    from test_gui_audit_advanced import paint_tile

    from nsfw_desk.gui.tiles import FLAG_MARK

    window = make_window()
    scan(qtbot, window, folder)
    _add_a_trained_detector(qtbot, window, model_dir, unsafe=1.0)
    window.spin.setValue(0.0)  # the primary flags every image too: two flaggers' names
    row = next(i for i, h in enumerate(column(window, Role.HASH)) if h)
    window._select_row(row)
    window.decide("unsafe")
    settle(qtbot, window)
    texts = paint_tile(window, row).texts
    line = next(t for t in texts if t.startswith(FLAG_MARK))
    font = window.grid.font()
    width = window.delegate.image_rect(QRect(0, 0, 172, 204)).width()
    bold = QFont(font)
    bold.setBold(True)
    badge = QFontMetrics(bold).horizontalAdvance("✖ UNSAFE")
    assert QFontMetrics(font).horizontalAdvance(line) + badge < width
    assert "✖ UNSAFE" in texts


def test_the_flaggers_line_says_a_shared_kind_once():
    from nsfw_desk.gui.tiles import flaggers_text

    assert flaggers_text(["NSFW", "AI"]) == "NSFW · AI"
    assert flaggers_text(["NSFW trained"]) == "NSFW trained"
    assert flaggers_text(["NSFW Marqo", "NSFW trained"]) == "NSFW Marqo · trained"
    assert flaggers_text(["NSFW Marqo", "NSFW trained", "AI"]) == "NSFW Marqo · NSFW trained · AI"


def _train_a_head(qtbot, window, tmp_path):
    """Label the scanned two-colour folder, train a head in the desk's dialog and wait until
    the window shows the new model: (dialog, result)."""
    from test_gui_training import label_all_but_a_few, start_training

    label_all_but_a_few(window)
    dialog = start_training(qtbot, window, tmp_path / "trained", mode="head", epochs=3)
    dialog.train_button.click()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=120_000)
    result = dialog.result
    qtbot.waitUntil(lambda: window.model_id == result.model_id, timeout=20_000)
    return dialog, result


def test_a_model_trained_with_several_detectors_flags_in_place_of_its_base(
    qtbot, make_window, request, tmp_path, model_dir
):
    """Trained from the decisions, the new model was shown beside its base, and with the
    flag rule "any detector" the base went on flagging every image the moderator had
    corrected: the flagged count hardly moved."""
    window = make_window(
        detectors=[{"model": str(model_dir), "threshold": 0.5, "enabled": True}],
        flag_rule="any",
    )
    window.model_override = None  # the detectors of Settings choose the model, no --model
    scan(qtbot, window, request.getfixturevalue("two_colour_folder"))
    base_model = window.model_id
    dialog, result = _train_a_head(qtbot, window, tmp_path)
    qtbot.waitUntil(lambda: window.reads.pending() == 0, timeout=20_000)
    # The trained model flags alone: the base has no chip and no "any detector" flag.
    assert window.results.detectors == []
    scores = [s for s in column(window, Role.SCORE) if s is not None]
    assert window.results.counts().flagged == sum(s >= 0.5 for s in scores)
    assert window.detectors_view.scan_specs() == ()  # nor a model run for it on a rescan
    assert window._model_spec() == str(result.out)
    assert "the primary detector, from Settings" in window._model_in_use()
    # It is the primary detector now; the base stays, turned off.
    assert window.settings.detectors == [
        {"model": str(result.out), "threshold": 0.5, "enabled": True},
        {"model": str(model_dir), "threshold": 0.5, "enabled": False},
    ]
    said = dialog.summary.toPlainText()
    assert f"{result.out.name} now flags in place of nsfw-sfw" in said
    assert "Settings → Detectors, turned off" in said
    # Turned on again there: both flag, as before the training.
    window.settings.detectors[1]["enabled"] = True
    window.detectors_view.load()
    qtbot.waitUntil(lambda: [d.model_id for d in window.results.detectors] == [base_model])
    dialog.reject()
    settle(qtbot, window)


def test_a_model_trained_with_one_model_is_settings_model_from_then_on(
    qtbot, make_window, request, tmp_path, model_dir
):
    """With one model, the trained one was shown for the session only: the next start
    loaded the base again, which flagged again what the moderator had corrected."""
    window = make_window(model=str(model_dir))
    window.model_override = None  # Settings choose the model, no --model
    scan(qtbot, window, request.getfixturevalue("two_colour_folder"))
    dialog, result = _train_a_head(qtbot, window, tmp_path)
    assert window.settings.model == str(result.out)  # what the next start loads
    assert window._model_spec() == str(result.out)
    assert "(from Settings)" in window._model_in_use()
    said = dialog.summary.toPlainText()
    assert f"{result.out.name} is now the model in Settings, in place of nsfw-sfw" in said
    dialog.reject()
    settle(qtbot, window)


def test_a_model_trained_under_model_option_leaves_settings_alone(
    qtbot, make_window, request, tmp_path, model_dir
):
    """`nsfw-desk --model X`: Settings are not this run's, so training does not change them."""
    window = make_window()
    scan(qtbot, window, request.getfixturevalue("two_colour_folder"))
    dialog, _ = _train_a_head(qtbot, window, tmp_path)
    assert window.settings.model == ""
    dialog.reject()
    settle(qtbot, window)


def test_hand_over_keeps_the_base_turned_off_and_only_when_it_flags(tmp_path):
    from nsfw_desk.core.detector_columns import hand_over

    base, ai = str(tmp_path / "base"), "org/deepfake-detector"
    first, second = str(tmp_path / "trained-1"), str(tmp_path / "trained-2")
    detectors = [
        {"model": ai, "threshold": 0.6, "enabled": True},
        {"model": base, "threshold": 0.4, "enabled": True},
    ]
    handed = hand_over(detectors, base + "/", first)  # however the folder is written
    assert handed == [
        {"model": ai, "threshold": 0.6, "enabled": True},
        {"model": first, "threshold": 0.4, "enabled": True},
        {"model": base, "threshold": 0.4, "enabled": False},
    ]
    assert hand_over(handed, first, second) == [
        handed[0],
        {"model": second, "threshold": 0.4, "enabled": True},
        {"model": first, "threshold": 0.4, "enabled": False},
        handed[2],
    ]
    # Trained again into the folder of an earlier run: one entry for it, not two.
    assert hand_over(handed, base, first) is None  # the base is off: nothing to hand over
    again = hand_over([*handed[:2], {**handed[2], "enabled": True}], base, first)
    assert [d["model"] for d in again] == [ai, first, base]
    assert hand_over([], base, first) is None  # one model: showing the new one is all
    assert hand_over(detectors, "org/other", first) is None
