"""The one JSON reader: a bad file gives one line naming the file and the problem."""

from __future__ import annotations

import re

import pytest

from napari_ihcseg._json_file import parse_json, read_json


@pytest.mark.parametrize("content, expect, message", [
    (b'{"a": 1\n"b": 2}', dict, r"not valid JSON \(line 2, column 1: Expecting ',' delimiter\)"),
    (b"", dict, r"not valid JSON \(line 1, column 1: Expecting value\)"),
    (b'{"a": \xff}', dict, r"not valid JSON \(not UTF-8 text: byte 6 is 0xff\)"),
    (b"[1, 2]", dict, r"expected a JSON object at the top level, got a list"),
    (b'"text"', dict, r"expected a JSON object at the top level, got a string"),
    (b"null", dict, r"expected a JSON object at the top level, got null"),
    (b"{}", list, r"expected a list at the top level, got an object"),
    (b"true", (int, float), r"expected a number at the top level, got true or false"),
])
def test_bad_content_is_one_line_naming_the_file(tmp_path, content, expect, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        read_json(path, expect=expect)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert re.search(message, text), text


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'none.json'}: no such file")):
        read_json(tmp_path / "none.json")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: is a folder, not a GeoJSON file")):
        read_json(tmp_path, what="GeoJSON")


def test_what_names_the_kind_of_file(tmp_path):
    path = tmp_path / "roi.geojson"
    path.write_text("{oops")
    with pytest.raises(ValueError, match=r"roi\.geojson: not valid GeoJSON \(line 1, column 2: "):
        read_json(path, what="GeoJSON")


def test_good_files_read_as_json(tmp_path):
    path = tmp_path / "ok.json"
    path.write_bytes(b'\xef\xbb\xbf{"tile": 256, "ids": [1, 2]}')  # a byte-order mark is allowed
    assert read_json(path) == {"tile": 256, "ids": [1, 2]}
    path.write_text("[1, 2]")
    assert read_json(path, expect=list) == [1, 2]
    assert read_json(path, expect=None) == [1, 2]
    assert parse_json("\ufeff{}", "x.json") == {}


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root reads any file")
def test_unreadable_file_names_it(tmp_path):
    path = tmp_path / "locked.json"
    path.write_text("{}")
    path.chmod(0)
    try:
        with pytest.raises(PermissionError, match=re.escape(f"{path}: cannot read it")):
            read_json(path)
    finally:
        path.chmod(0o600)


def test_readers_of_the_project_use_it(tmp_path):
    """The scoring summary, a GeoJSON region and point annotations give the same line and column."""
    from napari_ihcseg.io.points import read_points_geojson
    from napari_ihcseg.scoring.export import read_summary_json
    from napari_ihcseg.scoring.regions import region_from_geojson

    path = tmp_path / "bad.json"
    path.write_text('{"a": 1\n"b": 2}')
    for read, what in ((read_summary_json, "JSON"), (region_from_geojson, "GeoJSON"),
                       (read_points_geojson, "JSON")):
        with pytest.raises(ValueError, match=re.escape(f"{path}: not valid {what} (line 2, column 1: ")):
            read(path)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'none.geojson'}: no such file")):
        region_from_geojson(tmp_path / "none.geojson")
