"""The quality-control picture: nucleus outlines coloured by class, with a legend.

This is what a pathologist looks at before trusting a number: every nucleus
outlined, negative in blue, 1+ yellow, 2+ orange, 3+ red, and the summary
(counts, positive %, H-score, Allred) in a legend band under the image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

#: Outline colours by intensity class (RGB).
CLASS_COLOURS: dict[int, tuple[int, int, int]] = {
    0: (30, 100, 255),  # negative: blue
    1: (255, 225, 0),  # 1+: yellow
    2: (255, 140, 0),  # 2+: orange
    3: (220, 0, 0),  # 3+: red
}
CLASS_NAMES = {0: "negative", 1: "1+", 2: "2+", 3: "3+"}
#: Outline colour when nuclei are not scored.
UNSCORED_COLOUR = (0, 230, 120)
#: Longest side of the written picture; larger images are downsampled.
DEFAULT_MAX_SIDE = 4096


def _class_lut(labels: np.ndarray, intensity_class) -> np.ndarray | None:
    """A lookup table label -> class (-1 for unknown), or None when unscored."""
    if intensity_class is None:
        return None
    n = int(labels.max()) + 1
    lut = np.full(n, -1, dtype=np.int16)
    if isinstance(intensity_class, Mapping):
        for lab, cls in intensity_class.items():
            if 0 < int(lab) < n:
                lut[int(lab)] = int(cls)
    else:
        cls = np.asarray(intensity_class)
        if cls.ndim != 1:
            raise ValueError("intensity_class must be a mapping label -> class or a 1-D array indexed by label")
        m = min(n, cls.shape[0])
        lut[:m] = cls[:m]
    return lut


def _outlines(labels: np.ndarray) -> np.ndarray:
    """Inner boundary pixels of every nucleus (also between touching nuclei)."""
    lab = labels
    edge = np.zeros(lab.shape, dtype=bool)
    # A pixel is on the outline when one of its 4-neighbours has another label.
    diff_v = lab[1:, :] != lab[:-1, :]
    diff_h = lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= diff_v
    edge[:-1, :] |= diff_v
    edge[:, 1:] |= diff_h
    edge[:, :-1] |= diff_h
    return edge & (lab > 0)


def _downsample(image: np.ndarray, labels: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    step = int(np.ceil(max(labels.shape) / max_side)) if max_side else 1
    if step <= 1:
        return image, labels
    return image[::step, ::step], labels[::step, ::step]


def _legend_lines(summary: Mapping | None, n_nuclei: int, scored: bool) -> list[str]:
    if not summary:
        return [f"nuclei: {n_nuclei}"]
    s = summary
    lines = [f"nuclei: {s.get('n_nuclei', n_nuclei)}"]
    if scored and s.get("positive_percent") is not None:
        stain = str(s.get("stain", "")).upper()
        lines.append(
            f"{stain} positive: {s.get('n_positive', 0)} ({float(s['positive_percent']):.1f} %)"
            + (f"   H-score {float(s['h_score']):.0f}" if s.get("h_score") is not None else "")
        )
        if s.get("allred_total_score") is not None:
            lines.append(
                f"Allred {s.get('allred_proportion_score')} + {s.get('allred_intensity_score')}"
                f" = {s.get('allred_total_score')}"
                + (f"   {s['interpretation']}" if s.get("interpretation") else "")
            )
        if str(s.get("stain", "")).lower() == "ki67" and s.get("ki67_index") is not None:
            lines.append(f"Ki-67 index: {float(s['ki67_index']):.1f} %")
    return lines


def render_overlay(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    intensity_class=None,
    summary: Mapping | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
) -> np.ndarray:
    """Draw nucleus outlines coloured by class onto the image, with a legend band.

    Parameters
    ----------
    image : (H, W, 3) uint8
        The RGB image.
    labels : (H, W) int
        Nucleus instances, 0 background.
    intensity_class : mapping or 1-D array, optional
        Class (0–3) per label. Without it every outline is green.
    summary : mapping, optional
        The image summary (``n_nuclei``, ``positive_percent``, ``h_score``,
        Allred scores, ...) shown in the legend.
    max_side : int
        The picture is downsampled (nearest neighbour) so that its longest
        side is at most this; 0 keeps the full size.

    Returns
    -------
    picture : (H' + legend, W', 3) uint8
    """
    from PIL import Image, ImageDraw, ImageFont

    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be RGB (H, W, 3), got shape {image.shape}")
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels shape {labels.shape} does not match the image {image.shape[:2]}")
    n_nuclei = int(np.unique(labels[labels > 0]).size) if summary is None else int(summary.get("n_nuclei", 0))
    image, labels = _downsample(image, labels, max_side)
    lut = _class_lut(labels, intensity_class)

    out = image.astype(np.uint8, copy=True)
    edge = _outlines(labels)
    if lut is None:
        out[edge] = UNSCORED_COLOUR
    else:
        palette = np.array([CLASS_COLOURS[c] for c in range(4)] + [UNSCORED_COLOUR], dtype=np.uint8)
        cls = lut[labels[edge]]
        cls = np.where((cls >= 0) & (cls <= 3), cls, 4)
        out[edge] = palette[cls]

    # Legend band under the image.
    width = out.shape[1]
    font_size = int(np.clip(width / 45, 11, 40))
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    lines = _legend_lines(summary, n_nuclei, lut is not None)
    line_h = int(font_size * 1.35)
    band_h = line_h * (len(lines) + (1 if lut is not None else 0)) + line_h // 2
    canvas = Image.new("RGB", (width, out.shape[0] + band_h), (255, 255, 255))
    canvas.paste(Image.fromarray(out), (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = out.shape[0] + line_h // 4
    x0 = max(4, font_size // 2)
    if lut is not None:
        x = x0
        for c in range(4):
            draw.rectangle([x, y + 2, x + font_size, y + font_size], fill=CLASS_COLOURS[c], outline=(0, 0, 0))
            x += font_size + 4
            draw.text((x, y), CLASS_NAMES[c], fill=(0, 0, 0), font=font)
            x += int(draw.textlength(CLASS_NAMES[c], font=font)) + font_size
        y += line_h
    for line in lines:
        draw.text((x0, y), line, fill=(0, 0, 0), font=font)
        y += line_h
    return np.asarray(canvas)


def write_overlay(path: str | os.PathLike, image: np.ndarray, labels: np.ndarray, **kwargs) -> Path:
    """Render :func:`render_overlay` and write it as PNG, atomically."""
    from PIL import Image

    from napari_ihcseg._atomic import atomic_path

    picture = render_overlay(image, labels, **kwargs)
    with atomic_path(path) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return Path(path)
