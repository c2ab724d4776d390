"""The package import stays light: no torch, Qt or napari until a module needs them."""

import subprocess
import sys


def test_import_loads_neither_torch_nor_qt():
    code = ("import sys, napari_ihcseg, napari_ihcseg.stain, napari_ihcseg.data, napari_ihcseg.instances; "
            "heavy = [m for m in ('torch', 'qtpy', 'PyQt6', 'PySide6', 'napari') if m in sys.modules]; "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_manifest_is_packaged_beside_the_code():
    from importlib.resources import files

    text = (files("napari_ihcseg") / "napari.yaml").read_text()
    assert "name: napari-ihcseg" in text and "widgets:" in text
