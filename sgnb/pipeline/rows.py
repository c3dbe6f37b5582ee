"""Row files for `sgnb run`: input rows (JSON Lines or CSV) and the output file (JSON Lines, one record per row).

Input: `.jsonl` / `.ndjson` (one JSON object per line; blank lines are skipped) or `.csv` (a header row,
then one row per line; values are strings). Rows are numbered from 0 in file order: that number is the
row's `index`, and every message about a row names it together with its line.

Output: one JSON object per finished row, appended as soon as the row finishes (write, flush, fsync), so
an interrupted run loses nothing:

    {"index": 3, "input": {...the row...}, "output": {...the program's variables...}, "error": null}

A row whose program failed has `"output": null` and the error message in `"error"`.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgnb.pipeline.errors import OutputError, RowError

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)


@dataclass(slots=True)
class InputRow:
    """One input row: its 0-based `index`, the `line` it starts on (1-based) and its column values."""

    index: int
    line: int
    values: dict[str, Any]


def read_rows(path: str | Path) -> list[InputRow]:
    """All rows of a `.jsonl` or `.csv` file. Raises `RowError` naming the file, row and line at fault."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in JSONL_SUFFIXES + CSV_SUFFIXES:
        raise RowError(f"{path}: unknown input format {suffix or '(no suffix)'!r}: use .jsonl (one JSON object "
                       "per line) or .csv (a header row, then one row per line)")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = _read_csv(f, path) if suffix in CSV_SUFFIXES else _read_jsonl(f, path)
    except FileNotFoundError:
        raise RowError(f"{path}: no such input file") from None
    except UnicodeDecodeError as exc:
        raise RowError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise RowError(f"{path}: cannot read the input file: {exc.strerror or exc}") from None
    if not rows:
        raise RowError(f"{path}: the input file has no rows")
    return rows


def _read_jsonl(f, path: Path) -> list[InputRow]:
    rows: list[InputRow] = []
    for lineno, line in enumerate(f, start=1):
        if not line.strip():
            continue
        where = f"{path} row {len(rows)} (line {lineno})"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RowError(f"{where}: not valid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(value, dict):
            raise RowError(f"{where}: expected a JSON object with one key per program parameter, got "
                           f"{type(value).__name__}")
        rows.append(InputRow(len(rows), lineno, value))
    return rows


def _read_csv(f, path: Path) -> list[InputRow]:
    reader = csv.reader(f)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise RowError(f"{path} line 1: malformed CSV header: {exc}") from None
    if not header or any(not name.strip() for name in header):
        raise RowError(f"{path} line 1: the header row needs a name for every column, got {header!r}")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise RowError(f"{path} line 1: duplicate column name(s) {duplicates} in the header")
    rows: list[InputRow] = []
    line = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise RowError(f"{path} row {len(rows)} (line {line}): malformed CSV: {exc}") from None
        if fields:  # csv yields [] for a blank line
            if len(fields) != len(header):
                raise RowError(f"{path} row {len(rows)} (line {line}): {len(fields)} fields, but the header has "
                               f"{len(header)} ({', '.join(header)})")
            rows.append(InputRow(len(rows), line, dict(zip(header, fields))))
        line = reader.line_num + 1
    return rows


# ------------------------------------------------------------------ output
def read_output(path: str | Path) -> tuple[dict[int, dict], bool]:
    """The records of an existing output file by row index, and whether its last line was cut short (a run
    killed mid-write). Raises `RowError` for a malformed record elsewhere (not a file `sgnb run` wrote)."""
    path = Path(path)
    records: dict[int, dict] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return records, False
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read the output file {path} to resume it: {exc}") from None
    lines = text.split("\n")
    is_truncated = False
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        is_last = lineno == len(lines) or (lineno == len(lines) - 1 and not lines[-1])
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if is_last and not text.endswith("\n"):
                is_truncated = True  # the line being written when the run was killed
                continue
            raise RowError(f"{path} line {lineno}: not a record written by sgnb run (invalid JSON: {exc.msg})") from None
        index = record.get("index") if isinstance(record, dict) else None
        if not isinstance(index, int) or "input" not in record or "error" not in record:
            raise RowError(f"{path} line {lineno}: not a record written by sgnb run (needs 'index', 'input', 'error')")
        records[index] = record
    return records, is_truncated


def check_writable(path: str | Path) -> Path:
    """Fail early, with the path in the message, when `path` cannot be created or appended to."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write the output file {path}: it is a folder")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write the output file {path}: the folder {parent} does not exist")
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write the output file {path}: {exc.strerror or exc}") from None
    return path


def rewrite_output(path: Path, records: list[dict]) -> None:
    """Replace the output file with `records`, atomically (a temporary file renamed over it)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for record in records:
                f.write(encode_record(record))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def encode_record(record: dict) -> str:
    """One output line (values that are not JSON types are written as their repr)."""
    return json.dumps(record, ensure_ascii=False, default=repr) + "\n"


class OutputFile:
    """The output file, opened for appending: `write(record)` makes the record durable before returning."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write the output file {self.path}: {exc.strerror or exc}") from None

    def write(self, record: dict) -> None:
        self._file.write(encode_record(record))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
