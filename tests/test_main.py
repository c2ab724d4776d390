"""``python -m napari_ihcseg --headless``: the run command's no-display path."""

import json

from napari_ihcseg.__main__ import main


def test_headless_demo_scores_a_nuclear_stain_beside_its_truth(tmp_path, capsys):
    out_dir = tmp_path / "new" / "folder"   # created on demand
    assert main(["--headless", "--out", str(out_dir), "--stain", "ki67"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((out_dir / "ki67_sample.summary.json").read_text())
    assert summary["n_nuclei"] > 0
    assert f"nuclei     {summary['n_nuclei']}" in out
    assert (out_dir / "ki67_sample.overlay.png").is_file()
    # The demo is a nuclear stain: no stain-pattern warning, and the truth printed beside the score.
    assert summary["stain_pattern"] == "nuclear" and "cytoplasmic" not in out
    ki67_line = next(line for line in out.splitlines() if line.startswith("Ki-67"))
    assert "95 % CI" in ki67_line and "truth" in ki67_line
    assert summary["hotspot_n_cells"] == 100 and "hot spot" in out
    assert summary["hotspot_ki67_index"] > summary["ki67_index"]


def test_headless_demo_reports_an_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["--headless", "--image", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.png" in capsys.readouterr().err
