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


def test_pure_modules_import_where_torch_cannot():
    # A finder that refuses torch, as on a machine without it: the tiling, the inference config, the
    # training tiles and the training-pair writer import all the same, and the lazy package still
    # names what it holds.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import napari_ihcseg.inference.tiling, napari_ihcseg.inference.planning, napari_ihcseg.inference as inf\n"
        "from napari_ihcseg.inference import InferenceConfig, plan_tiles\n"
        "import napari_ihcseg.training.tiles, napari_ihcseg.pairs, napari_ihcseg.datasets, napari_ihcseg.pipeline\n"
        "assert 'plan_tiles' in dir(inf) and 'segment_image' in inf.__all__\n"
        "print(len(plan_tiles((640, 640)).boxes), InferenceConfig().tile, 'torch' in sys.modules)\n"
        "try:\n"
        "    inf.segment_image\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["1 1024 False", "torch is blocked"]


def test_manifest_is_packaged_beside_the_code():
    from importlib.resources import files

    text = (files("napari_ihcseg") / "napari.yaml").read_text()
    assert "name: napari-ihcseg" in text and "widgets:" in text
