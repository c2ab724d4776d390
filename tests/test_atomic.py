"""Atomic writes never leave a half-written file under the final name."""

import json

import pytest

from napari_ihcseg._atomic import atomic_path, write_json_atomic, write_text_atomic


def test_write_then_read_back(tmp_path):
    target = tmp_path / "sub" / "summary.json"
    write_json_atomic(target, {"n_nuclei": 3})
    assert json.loads(target.read_text()) == {"n_nuclei": 3}
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]


def test_refuses_to_overwrite_when_asked(tmp_path):
    target = tmp_path / "pair.png"
    write_text_atomic(target, "first")
    with pytest.raises(FileExistsError, match="pair.png"):
        write_text_atomic(target, "second", overwrite=False)
    assert target.read_text() == "first"


def test_crash_while_writing_keeps_the_old_file_and_no_debris(tmp_path):
    target = tmp_path / "cells.csv"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cells.csv"]


def test_temporary_name_keeps_the_suffix(tmp_path):
    with atomic_path(tmp_path / "labels.tif") as tmp:
        assert tmp.suffix == ".tif"
        assert tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "labels.tif").read_bytes() == b"x"
