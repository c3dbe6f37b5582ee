"""Row files: reading JSON Lines and CSV input, the output records, and where a bad row is reported."""

from __future__ import annotations

import json

import pytest

from sgnb.pipeline.errors import OutputError, RowError
from sgnb.pipeline.rows import OutputFile, check_writable, read_output, read_rows


def test_jsonl_rows_are_indexed_in_file_order_and_blank_lines_skipped(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"q": "a"}\n\n{"q": "b", "n": 2}\n')
    rows = read_rows(path)
    assert [(r.index, r.line, r.values) for r in rows] == [(0, 1, {"q": "a"}), (1, 3, {"q": "b", "n": 2})]


def test_csv_rows_map_the_header_to_values(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('q,n\n"a, with comma",1\n\nb,2\n')
    rows = read_rows(path)
    assert [(r.index, r.line, r.values) for r in rows] == [(0, 2, {"q": "a, with comma", "n": "1"}),
                                                          (1, 4, {"q": "b", "n": "2"})]


@pytest.mark.parametrize("name, text, message", [
    ("rows.jsonl", '{"q": "a"}\n{"q": \n', "rows.jsonl row 1 (line 2): not valid JSON"),
    ("rows.jsonl", '{"q": "a"}\n["a"]\n', "rows.jsonl row 1 (line 2): expected a JSON object with one key per "
                                         "program parameter, got list"),
    ("rows.csv", "q,n\na,1\nb\n", "rows.csv row 1 (line 3): 1 fields, but the header has 2 (q, n)"),
    ("rows.csv", "q,q\na,1\n", "rows.csv line 1: duplicate column name(s) ['q']"),
    ("rows.txt", "a\n", "rows.txt: unknown input format '.txt'"),
    ("rows.jsonl", "\n\n", "rows.jsonl: the input file has no rows"),
])
def test_a_malformed_row_is_reported_with_the_file_row_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(RowError) as info:
        read_rows(tmp_path / name)
    assert message in str(info.value) and str(tmp_path) in str(info.value)


def test_a_missing_input_file_is_named(tmp_path):
    with pytest.raises(RowError, match="no such input file"):
        read_rows(tmp_path / "absent.jsonl")


def test_each_written_record_is_on_disk_before_write_returns(tmp_path):
    path = tmp_path / "out.jsonl"
    with OutputFile(path) as out:
        out.write({"index": 1, "input": {"q": "b"}, "output": {"a": "x"}, "error": None})
        assert json.loads(path.read_text()) == {"index": 1, "input": {"q": "b"}, "output": {"a": "x"}, "error": None}
        out.write({"index": 0, "input": {"q": "a"}, "output": None, "error": "ValueError: no"})
        records, is_truncated = read_output(path)
    assert sorted(records) == [0, 1] and not is_truncated and records[0]["error"] == "ValueError: no"


def test_a_last_line_cut_short_by_a_kill_is_dropped_but_a_bad_line_elsewhere_is_an_error(tmp_path):
    path = tmp_path / "out.jsonl"
    good = json.dumps({"index": 0, "input": {}, "output": {}, "error": None})
    path.write_text(good + "\n" + '{"index": 1, "inp')
    records, is_truncated = read_output(path)
    assert list(records) == [0] and is_truncated
    path.write_text('{"index": 1, "inp\n' + good + "\n")
    with pytest.raises(RowError, match="out.jsonl line 1: not a record written by sgnb run"):
        read_output(path)


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing" / "out.jsonl", "the folder"),
    (lambda tmp: tmp, "it is a folder"),
    (lambda tmp: "/sys/out.jsonl", "Permission denied"),
])
def test_an_output_path_that_cannot_be_written_is_named(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(OutputError) as info:
        check_writable(path)
    assert f"cannot write the output file {path}" in str(info.value) and message in str(info.value)
