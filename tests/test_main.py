"""``python -m napari_ihcseg --headless``: the run command's no-display path."""

import json

from napari_ihcseg.__main__ import main


def test_headless_demo_segments_and_scores_the_sample(tmp_path, capsys):
    out_dir = tmp_path / "new" / "folder"   # created on demand
    assert main(["--headless", "--out", str(out_dir), "--stain", "ki67"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((out_dir / "ihc_sample.summary.json").read_text())
    assert summary["n_nuclei"] > 0
    assert "scaled ×2" in out   # the sample is at about half the models' magnification
    assert f"nuclei     {summary['n_nuclei']}" in out
    assert "Ki-67" in out and (out_dir / "ihc_sample.overlay.png").is_file()


def test_headless_demo_reports_an_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["--headless", "--image", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.png" in capsys.readouterr().err
