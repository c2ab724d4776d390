"""The Score widget's "how far to trust it" panel: warnings, settings, the Ki-67 hot-spot layers.

Everything computed here comes from the core (:mod:`napari_ihcseg.scoring.confidence`,
:mod:`~napari_ihcseg.scoring.stain_pattern`, :mod:`~napari_ihcseg.scoring.hotspot`);
this module only shows it: a warning banner, the table rows, a Shapes layer
with the hot-spot circle and an Image layer with the local Ki-67 index
(the heat map), which a check box shows or hides.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QFormLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from napari_ihcseg.scoring.summary import hotspot_of_cells

from ._common import DISPLAY_ONLY

#: Names of the layers this panel adds.
HOTSPOT_LAYER, HEATMAP_LAYER = "Ki-67 hot spot", "local Ki-67 index"
#: Vertices of the drawn hot-spot circle.
CIRCLE_VERTICES = 96
#: Banner style: dark text on amber, as a caution rather than an error.
WARNING_STYLE = "QLabel { background: #ffd27f; color: #3a2500; padding: 4px; border-radius: 3px; }"


def _interval(values) -> str:
    return "" if not values else f"  (95 % CI {values[0]:.1f}–{values[1]:.1f} %)"


def trust_rows(summary: dict) -> list[tuple[str, str]]:
    """Table rows for the confidence, hot-spot and stain-pattern figures of a summary."""
    rows = []
    if summary.get("positive_percent_ci"):
        low, high = summary["positive_percent_ci"]
        rows.append(("Positive %, 95 % CI", f"{low:.1f}–{high:.1f} %"))
    if summary.get("stain") == "ki67":
        spot = summary.get("hotspot_ki67_index")
        rows.append(("Ki-67 index, hot spot", "–" if spot is None else
                     f"{spot:.1f} %{_interval(summary.get('hotspot_ki67_index_ci'))}, "
                     f"{summary['hotspot_n_cells']} cells"))
        if summary.get("ki67_call"):
            rows.append((f"Ki-67 vs {summary['ki67_cutoff']:g} % cut-off", summary["ki67_call"]
                         + (" (uncertain)" if "ki67_call" in summary["uncertain_calls"] else "")))
    span = summary.get("allred_proportion_range")
    if span and "allred_proportion_score" in summary.get("uncertain_calls", []):
        rows.append(("Allred proportion across CI", f"{span[0]}–{span[1]} (uncertain)"))
    if "interpretation" in summary.get("uncertain_calls", []):
        rows.append(("ASCO/CAP reading", "uncertain (1 % / 10 % cut inside the CI)"))
    if summary.get("stain_pattern"):
        share = summary.get("dab_nuclear_share")
        rows.append(("DAB pattern", summary["stain_pattern"] + ("" if share is None else f" (share {share:.2f})")))
    if "enough_cells" in summary:
        rows.append(("Enough cells", f"{'yes' if summary['enough_cells'] else 'no'} (≥ {summary['min_cells']})"))
    return rows


class TrustPanel(QWidget):
    """Settings of the confidence and hot-spot figures, the warning banner and the hot-spot layers.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(WARNING_STYLE)
        self.warning.setVisible(False)
        self.min_cells = QSpinBox(minimum=1, maximum=1_000_000, value=500)
        self.min_cells.setToolTip("Warn below this count (IKWG: at least 500, ideally 1,000 tumour cells)")
        self.ki67_cutoff = QDoubleSpinBox(minimum=0.0, maximum=99.0, decimals=1, singleStep=1.0, value=0.0)
        self.ki67_cutoff.setSpecialValueText("none")
        self.ki67_cutoff.setSuffix(" %")
        self.hotspot_diameter = QDoubleSpinBox(minimum=10.0, maximum=10_000.0, decimals=0, singleStep=50.0,
                                               value=500.0)
        self.hotspot_diameter.setSuffix(" µm")
        self.hotspot_cells = QSpinBox(minimum=10, maximum=100_000, value=500)
        self.hotspot_cells.setSuffix(" cells")
        self.show_heatmap = QCheckBox("Show the local Ki-67 index (heat map)")
        self.show_heatmap.setChecked(True)
        self.show_heatmap.toggled.connect(self._heatmap_toggled)
        form = QFormLayout()
        form.addRow("Warn below", self.min_cells)
        form.addRow("Ki-67 cut-off", self.ki67_cutoff)
        form.addRow("Hot spot ∅ (with pixel size)", self.hotspot_diameter)
        form.addRow("Hot spot (no pixel size)", self.hotspot_cells)
        form.addRow("", self.show_heatmap)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.warning)
        layout.addLayout(form)

    def config_changes(self) -> dict:
        """The :class:`~napari_ihcseg.scoring.ScoringConfig` fields set here."""
        return {"min_cells": self.min_cells.value(), "ki67_cutoff": self.ki67_cutoff.value() or None,
                "hotspot_diameter_um": self.hotspot_diameter.value(), "hotspot_cells": self.hotspot_cells.value()}

    def connect(self, callback) -> None:
        """Call ``callback()`` when a setting changes."""
        for box in (self.min_cells, self.ki67_cutoff, self.hotspot_diameter, self.hotspot_cells):
            box.valueChanged.connect(lambda *_: callback())

    def show_result(self, summary: dict, cells, config, labels_layer) -> None:
        """Update the banner and, for Ki-67, the hot-spot and heat-map layers."""
        warnings = summary.get("warnings") or []
        self.warning.setText("\n".join(f"⚠ {w}" for w in warnings))
        self.warning.setVisible(bool(warnings))
        if summary.get("stain") != "ki67" or labels_layer is None:
            self.clear_layers()
            return
        search = hotspot_of_cells(cells, config, cells["included"].to_numpy(bool),  # classified already
                                  cells["intensity_class"].to_numpy())
        spot, heat = search.hotspot, search.local_map
        self._show_heatmap(heat, labels_layer)
        self._show_circle(spot, labels_layer)

    def reset(self) -> None:
        """Nothing scored: no banner, no hot-spot layers."""
        self.warning.setVisible(False)
        self.clear_layers()

    def clear_layers(self) -> None:
        """Remove the hot-spot layers."""
        for name in (HOTSPOT_LAYER, HEATMAP_LAYER):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)

    def _show_circle(self, spot, labels_layer) -> None:
        if spot is None:
            if HOTSPOT_LAYER in self.viewer.layers:
                self.viewer.layers.remove(HOTSPOT_LAYER)
            return
        angles = np.linspace(0.0, 2 * np.pi, CIRCLE_VERTICES, endpoint=False)
        circle = np.column_stack([spot.center[0] + spot.radius * np.sin(angles),
                                  spot.center[1] + spot.radius * np.cos(angles)])
        text = f"hot spot {spot.index:.1f} % ({spot.n_positive}/{spot.n_cells})"
        if HOTSPOT_LAYER in self.viewer.layers:
            layer = self.viewer.layers[HOTSPOT_LAYER]
            layer.data = [circle]
        else:
            layer = self.viewer.add_shapes([circle], shape_type="polygon", name=HOTSPOT_LAYER,
                                           edge_color="yellow", face_color="transparent", edge_width=3,
                                           scale=labels_layer.scale[-2:], translate=labels_layer.translate[-2:],
                                           metadata={DISPLAY_ONLY: True})
        layer.metadata["ihcseg_hotspot"] = {"index": spot.index, "n_cells": spot.n_cells,
                                            "center": list(spot.center), "radius": spot.radius}
        layer.features = {"label": [text]}
        layer.text = {"string": "{label}", "color": "yellow", "anchor": "upper_left", "size": 10}

    def _show_heatmap(self, heat, labels_layer) -> None:
        if heat is None:
            if HEATMAP_LAYER in self.viewer.layers:
                self.viewer.layers.remove(HEATMAP_LAYER)
            return
        scale = np.asarray(labels_layer.scale[-2:], float)
        translate = np.asarray(labels_layer.translate[-2:], float) + np.asarray(heat.origin) * scale
        if HEATMAP_LAYER in self.viewer.layers:
            layer = self.viewer.layers[HEATMAP_LAYER]
            layer.data = heat.index
            layer.scale, layer.translate = scale * heat.spacing, translate
        else:
            layer = self.viewer.add_image(heat.index, name=HEATMAP_LAYER, colormap="inferno", opacity=0.45,
                                          blending="translucent", contrast_limits=(0.0, 100.0),
                                          scale=scale * heat.spacing, translate=translate, interpolation2d="linear",
                                          metadata={DISPLAY_ONLY: True})
            layer.visible = self.show_heatmap.isChecked()

    def _heatmap_toggled(self, checked: bool) -> None:
        if HEATMAP_LAYER in self.viewer.layers:
            self.viewer.layers[HEATMAP_LAYER].visible = bool(checked)
