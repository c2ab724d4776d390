"""Bad files: one line naming the file and the reason, never a library traceback."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.io import ImageReadError, open_image, read_image, read_labels


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return make_synthetic_ihc((128, 160), seed=2).image


def _truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _empty(d, rgb):
    (d / "empty.tif").touch()
    return d / "empty.tif", "empty file"


def _truncated_png(d, rgb):
    Image.fromarray(rgb).save(d / "t.png")
    return _truncate(d / "t.png"), "truncated"


def _truncated_jpeg(d, rgb):
    Image.fromarray(rgb).save(d / "t.jpg")
    return _truncate(d / "t.jpg"), "truncated"


def _truncated_tiff(d, rgb):
    tifffile.imwrite(d / "t.tif", rgb, photometric="rgb")
    return _truncate(d / "t.tif"), "cannot decode"


def _truncated_tiled_tiff(d, rgb):
    tifffile.imwrite(d / "tt.tif", rgb, photometric="rgb", tile=(32, 32), compression="zlib")
    return _truncate(d / "tt.tif", 0.6), "cannot decode"


def _truncated_header(d, rgb):
    tifffile.imwrite(d / "th.tif", rgb, photometric="rgb")
    return _truncate(d / "th.tif", 0.0002), "TIFF"


def _corrupt_tiff(d, rgb):
    (d / "c.tif").write_bytes(b"II*\x00" + np.random.default_rng(0).bytes(4000))
    return d / "c.tif", "truncated or corrupt"


def _corrupt_png(d, rgb):
    (d / "c.png").write_bytes(np.random.default_rng(1).bytes(4000))
    return d / "c.png", "not a valid PNG"


def _corrupt_png_body(d, rgb):
    Image.fromarray(rgb).save(d / "cb.png")
    data = bytearray((d / "cb.png").read_bytes())
    data[100:400] = np.random.default_rng(2).bytes(300)
    (d / "cb.png").write_bytes(bytes(data))
    return d / "cb.png", "cannot decode the PNG"


def _corrupt_jpeg(d, rgb):
    (d / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(3).bytes(3000))
    return d / "c.jpg", "cannot decode the JPEG"


def _unsupported_bmp(d, rgb):
    Image.fromarray(rgb).save(d / "a.bmp")
    return d / "a.bmp", "unsupported file type .bmp"


def _unsupported_text(d, rgb):
    (d / "notes.txt").write_text("not an image\n")
    return d / "notes.txt", "unsupported file type .txt"


def _missing(d, rgb):
    return d / "missing.tif", "no such file"


def _directory(d, rgb):
    (d / "folder.tif").mkdir()
    return d / "folder.tif", "folder"


CASES = {
    "empty": _empty,
    "truncated-png": _truncated_png,
    "truncated-jpeg": _truncated_jpeg,
    "truncated-tiff": _truncated_tiff,
    "truncated-tiled-tiff": _truncated_tiled_tiff,
    "truncated-tiff-header": _truncated_header,
    "corrupt-tiff": _corrupt_tiff,
    "corrupt-png": _corrupt_png,
    "corrupt-png-body": _corrupt_png_body,
    "corrupt-jpeg": _corrupt_jpeg,
    "unsupported-bmp": _unsupported_bmp,
    "unsupported-text": _unsupported_text,
    "missing": _missing,
    "directory": _directory,
}


def _assert_one_line_error(info, path, reason, capfd):
    err = info.value
    message = str(err)
    assert isinstance(err, ImageReadError) and isinstance(err, ValueError)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert reason in message
    assert err.path == str(path)
    # no chained library exception would be printed with it
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    out, printed = capfd.readouterr()
    assert printed == "" and out == ""  # nothing else reaches the terminal


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reader", [read_image, open_image], ids=lambda f: f.__name__)
def test_bad_image_file_gives_one_line(tmp_path, rgb, case, reader, capfd):
    path, reason = CASES[case](tmp_path, rgb)
    with pytest.raises(ImageReadError) as info:
        result = reader(path)
        result.levels[0].compute()  # a lazy image fails at the latest when its data is read
    _assert_one_line_error(info, path, reason, capfd)


# PNG and JPEG cases whose content (RGB) is refused as labels before decoding
LABEL_CASES = [c for c in CASES if c not in ("truncated-png", "corrupt-png-body", "truncated-jpeg", "corrupt-jpeg")]


@pytest.mark.parametrize("case", LABEL_CASES)
def test_bad_label_file_gives_one_line(tmp_path, rgb, case, capfd):
    path, reason = CASES[case](tmp_path, rgb)
    with pytest.raises(ImageReadError) as info:
        read_labels(path)
    _assert_one_line_error(info, path, reason, capfd)


def test_truncated_label_png_gives_one_line(tmp_path, capfd):
    path = tmp_path / "labels.png"
    Image.fromarray((np.arange(200 * 300).reshape(200, 300) % 1000).astype(np.uint16)).save(path)
    _truncate(path)
    with pytest.raises(ImageReadError) as info:
        read_labels(path)
    _assert_one_line_error(info, path, "truncated", capfd)


def test_damaged_tile_fails_when_read_lazily(tmp_path, rgb, capfd):
    path = tmp_path / "damaged.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(rgb, subifds=1, tile=(32, 32), photometric="rgb", compression="zlib")
        tif.write(np.ascontiguousarray(rgb[::2, ::2]), subfiletype=1, tile=(32, 32), photometric="rgb",
                  compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        offset, count = page.dataoffsets[7], page.databytecounts[7]
    with open(path, "r+b") as fh:  # overwrite one level-0 tile with garbage
        fh.seek(offset)
        fh.write(bytes(count))
    lazy = open_image(path)  # the file structure and the overview are fine
    assert lazy.levels[1].compute().shape == (64, 80, 3)
    with pytest.raises(ImageReadError, match="cannot decode the image data at level 0") as info:
        lazy.levels[0].compute()
    _assert_one_line_error(info, path, "rows", capfd)


def test_unreadable_file(tmp_path, rgb, capfd):
    if os.name != "posix" or os.geteuid() == 0:
        pytest.skip("needs a POSIX user without root rights")
    path = tmp_path / "locked.png"
    Image.fromarray(rgb).save(path)
    path.chmod(0)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    _assert_one_line_error(info, path, "permission denied", capfd)


def test_not_a_path_is_a_type_error():
    with pytest.raises(TypeError, match="file path"):
        read_image(np.zeros((4, 4, 3), np.uint8))


def test_library_warnings_do_not_reach_the_terminal(tmp_path):
    """Outside pytest's log capture, tifffile's logged complaints stay silent too."""
    path, _ = _corrupt_tiff(tmp_path, None)
    script = (
        "import sys\n"
        "from napari_ihcseg.io import ImageReadError, read_image\n"
        "try:\n"
        "    read_image(sys.argv[1])\n"
        "except ImageReadError as exc:\n"
        "    print(exc, file=sys.stderr)\n"
        "    sys.exit(1)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: ") and "corrupt" in lines[0]
