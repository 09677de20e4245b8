"""Calibration view: score histograms by reviewed label, precision-recall curve, suggestions.

It reads the reviewer's labels and the stored scores (no model run) on the library's read
thread, and can apply a suggested threshold to the main window's slider.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCharts import QChart, QChartView, QLineSeries, QScatterSeries, QValueAxis
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from nsfw_desk.core import defaults
from nsfw_desk.core.metrics import (
    Calibration,
    NotEnoughReviews,
    ThresholdMetrics,
    calibration_for,
    models_with_reviews,
)
from nsfw_desk.gui.library_tasks import LibraryReads

UNSAFE = QColor("#d64545")
SAFE = QColor("#2e8b57")
MARK = QColor("#3b6fd6")
BINS = 20


def _describe(m: ThresholdMetrics) -> str:
    return (
        f"threshold {m.threshold:.2f}: precision {m.precision:.2f}, recall {m.recall:.2f}, "
        f"F1 {m.f1:.2f}, false-positive rate {m.fpr:.2f}"
    )


def _models_and_names(library) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """Models with reviews and their names for people (read thread)."""
    models = models_with_reviews(library)
    return models, library.model_names(m for m, _ in models)


class CalibrationDialog(QDialog):
    threshold_applied = Signal(float)

    def __init__(
        self, reads: LibraryReads, threshold: float, model_id: str | None = None, parent=None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Calibrate the threshold")
        self.resize(980, 620)
        self.reads = reads
        self._serial = 0
        self.threshold = threshold
        self.calibration: Calibration | None = None

        self.model_box = QComboBox()
        self.model_box.setPlaceholderText("Reading the library…")
        self.loaded = False  # models listed and the first calibration shown
        self.target = QDoubleSpinBox(
            minimum=0.5, maximum=1.0, singleStep=0.01, decimals=2, value=defaults.TARGET_RECALL
        )
        self.message = QLabel(wordWrap=True)
        self.current = QLabel(wordWrap=True)
        self.apply_target = QPushButton()
        self.apply_f1 = QPushButton()
        self.apply_target.clicked.connect(lambda: self._apply(self.calibration.at_target))
        self.apply_f1.clicked.connect(lambda: self._apply(self.calibration.best_f1))

        self.histogram = QChartView()
        self.curve = QChartView()
        for view in (self.histogram, self.curve):
            view.setRenderHint(QPainter.RenderHint.Antialiasing)
            view.setMinimumSize(380, 320)

        form = QFormLayout()
        form.addRow("Model", self.model_box)
        form.addRow("Target recall", self.target)
        charts = QHBoxLayout()
        charts.addWidget(self.histogram)
        charts.addWidget(self.curve)
        buttons = QHBoxLayout()
        buttons.addWidget(self.apply_target)
        buttons.addWidget(self.apply_f1)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addLayout(charts, 1)
        layout.addWidget(self.current)
        layout.addLayout(buttons)

        self.message.setText("Reading your reviews…")
        self._show_charts(False)
        self.reads.query(
            _models_and_names, lambda found: self._fill_models(*found, model_id=model_id)
        )

    def _fill_models(
        self, models: list[tuple[str, int]], names: dict[str, str], model_id: str | None
    ) -> None:
        self.model_box.blockSignals(True)
        if not models:  # read, and none: not "Reading the library…" for good
            self.model_box.setPlaceholderText("No model has scored a reviewed image yet")
        for model, count in models:
            # Distinct images, like `nsfw-desk metrics`: copies count once, and only
            # reviewed images this model has scored.
            self.model_box.addItem(
                f"{names.get(model, model)}  ({count} distinct reviewed images with a score)",
                model,
            )
            self.model_box.setItemData(
                self.model_box.count() - 1, model, Qt.ItemDataRole.ToolTipRole
            )
        if model_id is not None:
            index = self.model_box.findData(model_id)
            if index >= 0:
                self.model_box.setCurrentIndex(index)
        self.model_box.blockSignals(False)
        self.model_box.currentIndexChanged.connect(lambda _: self.refresh())
        self.target.valueChanged.connect(lambda _: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        """Ask the read thread for the selected model's calibration; the newest ask wins."""
        model_id = self.model_box.currentData()
        self._serial += 1
        serial = self._serial
        if model_id is None:
            self._show(
                NotEnoughReviews(
                    "No reviewed item has a score yet: review some images "
                    "first (U and S), then come back."
                )
            )
            return
        target = self.target.value()

        def calibrate(library) -> Calibration | NotEnoughReviews:
            try:
                return calibration_for(library, model_id, target_recall=target)
            except NotEnoughReviews as exc:
                return exc

        self.reads.query(calibrate, lambda found: serial == self._serial and self._show(found))

    def _show_charts(self, on: bool) -> None:
        for view in (self.histogram, self.curve):
            view.setVisible(on)

    def _show(self, found: Calibration | NotEnoughReviews) -> None:
        self.loaded = True
        self.calibration = None
        if isinstance(found, NotEnoughReviews):
            self.message.setText(str(found))
            self.message.show()
            for view in (self.histogram, self.curve):
                view.setChart(QChart())
                view.hide()
            self.current.setText("")
            self.apply_target.hide()
            self.apply_f1.hide()
            return
        self.calibration = found
        self.message.hide()
        self._show_charts(True)
        self._draw()

    def _apply(self, metrics: ThresholdMetrics | None) -> None:
        if metrics is None:
            return
        # The slider has two decimals; rounding down keeps the suggested recall.
        self.threshold = math.floor(metrics.threshold * 100 + 1e-9) / 100
        self.threshold_applied.emit(self.threshold)
        self._draw()

    def _draw(self) -> None:
        c = self.calibration
        self.histogram.setChart(self._histogram_chart(c))
        self.curve.setChart(self._curve_chart(c))
        self.current.setText("Current " + _describe(c.at(self.threshold)))
        if c.at_target is not None:
            self.apply_target.setText(
                f"Apply {c.at_target.threshold:.2f} (recall ≥ {c.target_recall:.2f}, "
                f"precision {c.at_target.precision:.2f})"
            )
            self.apply_target.show()
        else:
            self.apply_target.hide()
        self.apply_f1.setText(f"Apply {c.best_f1.threshold:.2f} (best F1 {c.best_f1.f1:.2f})")
        self.apply_f1.show()

    def _histogram_chart(self, c: Calibration) -> QChart:
        chart = QChart()
        chart.setTitle("Scores of reviewed images")
        edges = np.linspace(0.0, 1.0, BINS + 1)
        top = 1
        for name, scores, colour in (
            ("reviewed unsafe", c.unsafe_scores, UNSAFE),
            ("reviewed safe", c.safe_scores, SAFE),
        ):
            counts, _ = np.histogram(scores, bins=edges)
            top = max(top, int(counts.max()) if counts.size else 0)
            series = QLineSeries(name=name)
            series.setPen(QPen(colour, 2))
            for i, count in enumerate(counts):  # a step outline per bin
                series.append(QPointF(edges[i], count))
                series.append(QPointF(edges[i + 1], count))
            chart.addSeries(series)
        marker = self._threshold_line(top)
        chart.addSeries(marker)
        x, y = QValueAxis(), QValueAxis()
        x.setRange(0, 1)
        x.setTickCount(6)
        x.setLabelFormat("%.1f")
        x.setTitleText("unsafe score")
        maximum, ticks = count_axis(top)
        y.setRange(0, maximum)
        y.setTickCount(ticks)
        y.setTitleText("images")
        y.setLabelFormat("%d")
        chart.addAxis(x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(y, Qt.AlignmentFlag.AlignLeft)
        for series in chart.series():
            series.attachAxis(x)
            series.attachAxis(y)
        return chart

    def _threshold_line(self, top: float) -> QLineSeries:
        line = QLineSeries(name=f"threshold {self.threshold:.2f}")
        line.setPen(QPen(MARK, 2, Qt.PenStyle.DashLine))
        line.append(QPointF(self.threshold, 0))
        line.append(QPointF(self.threshold, top * 1.1))
        return line

    def _curve_chart(self, c: Calibration) -> QChart:
        chart = QChart()
        chart.setTitle("Precision and recall over thresholds")
        curve = QLineSeries(name="precision–recall")
        curve.setPen(QPen(QColor("#444"), 2))
        for m in c.points:
            curve.append(QPointF(m.recall, m.precision))
        here = c.at(self.threshold)
        mark = QScatterSeries(name=f"threshold {self.threshold:.2f}")
        mark.setColor(MARK)
        mark.setMarkerSize(12)
        mark.append(QPointF(here.recall, here.precision))
        chart.addSeries(curve)
        chart.addSeries(mark)
        x, y = QValueAxis(), QValueAxis()
        for axis, title in ((x, "recall"), (y, "precision")):
            axis.setRange(0, 1)
            axis.setTickCount(6)
            axis.setLabelFormat("%.1f")
            axis.setTitleText(title)
        chart.addAxis(x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(y, Qt.AlignmentFlag.AlignLeft)
        for series in (curve, mark):
            series.attachAxis(x)
            series.attachAxis(y)
        return chart


def count_axis(top: float) -> tuple[int, int]:
    """(maximum, tick count) of a count axis over 0..top with round steps of 1, 2 or 5 × 10ⁿ
    (the ticks were top × 1.1 split in four: 0, 6, 13, 20, 27)."""
    rough = max(top * 1.1, 1) / 4
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    step = max(1, int(step))
    maximum = step * math.ceil(max(top * 1.1, 1) / step)
    return maximum, maximum // step + 1
