"""Field paths and value cells: every shown number names the field it was read from."""

from __future__ import annotations

import json

import pytest

from mapguard.report._cells import Sources, format_value, join_path, parse_path

DOC = {
    "test": {"per_secret": [{"rank": 1, "pvalue": 1.25e-4}], "a.b": {"x y": 0.5}},
    "name": "<b>",
    "digest": "ab" * 32,
}


@pytest.mark.parametrize("keys", [["test", "per_secret", 0, "rank"], ["test", "a.b", "x y"]])
def test_join_and_parse_round_trip(keys):
    path = ""
    for key in keys:
        path = join_path(path, key)
    assert parse_path(path) == keys


def test_num_keeps_field_and_exact_value():
    s = Sources({"result": DOC})
    cell = s.num("result:test.per_secret[0].pvalue", "pvalue")
    assert (cell.field, json.loads(cell.raw), cell.text) == (
        "result:test.per_secret[0].pvalue",
        1.25e-4,
        "1.250e-04",
    )
    assert s.num('result:test["a.b"]["x y"]', "percent").text == "50.0 %"
    assert s.num("result:digest", "text").mono and not s.num("result:name", "text").mono


def test_missing_fields_are_said_to_be_missing_not_invented():
    s = Sources({"result": DOC})
    for ref in ("result:test.per_secret[3].rank", "result:nope", "watermark:x", None):
        cell = s.num(ref)
        assert cell.text == "not recorded" and cell.field == "" and cell.raw == ""
    assert (
        s.first("result:nope", "result:test.per_secret[0].rank") == "result:test.per_secret[0].rank"
    )


def test_flatten_walks_nested_parameters():
    s = Sources({"c": {"p": {"mask": {"lr": 0.05, "exclude": []}, "arch": "vgg"}}})
    rows = dict(s.flatten("c:p"))
    assert set(rows) == {"arch", "mask.exclude", "mask.lr"}
    assert rows["mask.lr"].field == "c:p.mask.lr" and rows["mask.lr"].text == "0.05"


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (0.000125, "pvalue", "1.250e-04"),
        (0.015625, "pvalue", "0.01562"),
        (1832, "int", "1832"),
        (0.925, "percent", "92.5 %"),
        (True, "float", "true"),
        (None, "int", "null"),
    ],
)
def test_formats(value, kind, text):
    assert format_value(value, kind) == text
