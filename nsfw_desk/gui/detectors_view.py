"""Several detectors on the desk (issue 13): a score column and a chip per detector, Show and
Sort per detector, a threshold per detector, and the flag rule.

The shown model (the switcher's choice, else the first enabled detector of Settings) is the
primary: its threshold is the toolbar's slider. The other enabled detectors of
Settings.detectors are found in the library by what loads them (core/detector_columns.py),
their stored scores read on the read thread, and each gets a threshold in the compact
control beside the slider; moving one re-splits at once, without running a model.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QWidget

from nsfw_desk.core.detector_columns import chip_names, detector_kind, matches, resolve
from nsfw_desk.core.result_columns import read_scores
from nsfw_desk.gui.combos import fit_popup, narrow_combo
from nsfw_desk.gui.grid import DETECTOR_FILTER, DETECTOR_SORT


class DetectorsView:
    """Keeps the grid's detector columns and the toolbar's detector controls current."""

    def __init__(self, window, bar) -> None:
        self.window = window
        self._serial = 0
        self.label = QLabel(" Detector ")
        self.choice = narrow_combo(8)
        self.choice.setObjectName("detector_choice")
        self.choice.setToolTip("Another detector's threshold: moving it re-splits at once")
        self.spin = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.01, decimals=2)
        self.spin.setObjectName("detector_threshold")
        self.choice.currentIndexChanged.connect(self._show_choice)
        self.spin.valueChanged.connect(self._spin_moved)
        self._actions = [bar.addWidget(w) for w in (self.label, self.choice, self.spin)]
        self._show_controls(False)

    # --- reading ------------------------------------------------------------------------

    def load(self) -> None:
        """Find the enabled detectors other than the shown model, and read their scores."""
        window = self.window
        folder, shown = window.folder, window.model_id
        specs = window.settings.detector_specs() if window.settings.detectors else []
        hashes = window.results.hash_snapshot()  # row order: the scores come back aligned
        self._serial += 1
        serial = self._serial

        def read(library):
            models = library.models_by_source()
            columns = [c for c in resolve(specs, models) if c.model_id != shown]
            scores = [read_scores(library, c.model_id, hashes) for c in columns]
            row = next((m for m in models if m["id"] == shown), None)
            kind = detector_kind(row["unsafe_labels"]) if row else "nsfw"
            # Two detectors of one kind (a model and its fine-tuned copy) get chips that
            # tell them apart; one of each kind keeps "NSFW" and "AI".
            chips = chip_names(
                [(kind, row["name"] if row else "", shown or "")]
                + [(c.kind, c.name, c.model_id) for c in columns]
            )
            columns = [replace(c, chip=chip) for c, chip in zip(columns, chips[1:], strict=True)]
            return kind, columns, scores, chips[0]

        def show(found) -> None:
            if serial != self._serial or folder != window.folder or shown != window.model_id:
                return
            kind, columns, scores, primary_chip = found
            if not columns and not window.results.detectors:  # one detector, as before
                window.results.primary_kind = kind
                return
            window.results.flag_rule = window.settings.flag_rule
            moving = window.results.detectors_move_rows()
            with window._keeping_current() if moving else contextlib.nullcontext():
                window.results.set_detectors(
                    kind, columns, scores, hashes, primary_chip=primary_chip
                )
            self._fill_controls()
            window._update_counts()
            window._refresh_view_state()

        window.reads.query(read, show)

    def scan_specs(self) -> tuple[str, ...]:
        """What a scan loads besides the primary: the other enabled detectors' models."""
        settings = self.window.settings
        if not settings.detectors:
            return ()
        primary = self.window._model_spec()
        return tuple(
            spec
            for spec, _ in settings.detector_specs()
            if spec != primary and not (primary and matches(spec, primary, None))
        )

    # --- the toolbar: filter and sort entries, the compact threshold control ------------

    def _fill_controls(self) -> None:
        window, results = self.window, self.window.results
        for box, extra in (
            (window.filter_box, results.detector_filters()),
            (window.sort_box, results.detector_sorts()),
        ):
            box.blockSignals(True)
            prefix = DETECTOR_FILTER if box is window.filter_box else DETECTOR_SORT
            for i in reversed(range(box.count())):
                if str(box.itemData(i)).startswith(prefix):
                    box.removeItem(i)
            for key, text in extra.items():
                box.addItem(text, key)
            current = results.filter if box is window.filter_box else results.sort
            box.setCurrentIndex(max(0, box.findData(current)))
            box.blockSignals(False)
            fit_popup(box)
        self.choice.blockSignals(True)
        self.choice.clear()
        for detector in results.detectors:
            self.choice.addItem(f"{detector.short} · {detector.name}", detector.model_id)
        self.choice.blockSignals(False)
        fit_popup(self.choice)
        self._show_controls(bool(results.detectors))
        self._show_choice()

    def _show_controls(self, on: bool) -> None:
        for action in self._actions:
            action.setVisible(on)

    def _show_choice(self, *_args) -> None:
        model_id = self.choice.currentData()
        threshold = self.window.results.detector_threshold(model_id) if model_id else None
        if threshold is not None:
            self.spin.blockSignals(True)
            self.spin.setValue(threshold)
            self.spin.blockSignals(False)

    def _spin_moved(self, value: float) -> None:
        model_id = self.choice.currentData()
        if model_id:
            self.set_threshold(model_id, value)

    def set_threshold(self, model_id: str, value: float) -> None:
        """One detector's threshold: the grid re-splits, Settings remembers it."""
        window = self.window
        value = round(float(value), 2)
        detector = next((d for d in window.results.detectors if d.model_id == model_id), None)
        if detector is None:
            return
        with window._keeping_current():
            window.results.set_detector_threshold(model_id, value)
        for entry in window.settings.detectors:
            if entry.get("model", "") == detector.spec:
                entry["threshold"] = value
        if self.choice.currentData() == model_id and abs(self.spin.value() - value) > 1e-9:
            self.spin.blockSignals(True)
            self.spin.setValue(value)
            self.spin.blockSignals(False)
        window._update_counts()

    def primary_threshold_moved(self, value: float) -> None:
        """The slider is the primary's threshold: the first enabled detector remembers it."""
        for entry in self.window.settings.detectors:
            if entry.get("enabled", True):
                entry["threshold"] = value
                return


def visible_widget(widget: QWidget) -> bool:  # for tests: the control is in the toolbar
    return widget.isVisibleTo(widget.window())
