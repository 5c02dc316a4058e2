"""CSV import and export.

Import streams the file in chunks through the record lifecycle inside one transaction. Every row's errors are
collected; by default one bad row rolls the whole file back, and with ``partial`` the good rows commit. Either way
the error report names the row, the field and the code.

Export neutralises spreadsheet formula triggers (``= + - @`` TAB CR, and a leading ``'``) with a leading ``'``,
and import reverses exactly that transform, so an export re-imports unchanged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from keel.context import Context
from keel.errors import KeelError
from keel.records import save_many, upsert_many

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")
Progress = Callable[[int], None]


def neutralise(value: str) -> str:
    return "'" + value if value and value[0] in TRIGGERS else value


def unneutralise(value: str) -> str:
    return value[1:] if len(value) > 1 and value[0] == "'" and value[1] in TRIGGERS else value


@dataclass
class RowIssue:
    row: int  # 1-based data row (the header is row 0)
    field: str
    code: str
    message: str


@dataclass
class ImportReport:
    total: int = 0
    created: int = 0
    updated: int = 0
    issues: list[RowIssue] = field(default_factory=list)
    committed: bool = False

    @property
    def failed_rows(self) -> int:
        return len({i.row for i in self.issues})


class ImportFailed(KeelError):
    code = "IMPORT_FAILED"

    def __init__(self, report: ImportReport) -> None:
        super().__init__(f"{report.failed_rows} of {report.total} row(s) failed; nothing was imported.")
        self.report = report


def read_rows(handle: IO[str], chunk: int) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    reader = csv.reader(handle)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise KeelError("The CSV file is empty.", code="INVALID_CSV") from None
    if not header or any(not h for h in header):
        raise KeelError("The CSV header has an empty column name.", code="INVALID_CSV")
    batch: list[dict[str, Any]] = []
    for line in reader:
        if not line:
            continue
        if len(line) != len(header):
            raise KeelError(f"Row {reader.line_num - 1} has {len(line)} values but the header has {len(header)}.",
                            code="INVALID_CSV")
        batch.append({h: unneutralise(v) for h, v in zip(header, line, strict=True) if v != ""})
        if len(batch) >= chunk:
            yield header, batch
            batch = []
    if batch:
        yield header, batch


def import_csv(ctx: Context, obj_name: str, path: str | Path, *, upsert_on: str | None = None,
               partial: bool = False, chunk: int = 5000, progress: Progress | None = None,
               error_file: str | Path | None = None) -> ImportReport:
    report = ImportReport()
    schema = ctx.schema()
    obj = schema.get_object(obj_name)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        try:
            with ctx.db.transaction() as conn:
                for _header, rows in read_rows(handle, chunk):
                    if upsert_on:
                        results = upsert_many(ctx, obj.api_name, rows, upsert_on, all_or_none=False, conn=conn)
                    else:
                        results = save_many(ctx, obj.api_name, rows, all_or_none=False, conn=conn)
                    for r in results:
                        for e in r.errors:
                            report.issues.append(RowIssue(report.total + r.index + 1, ";".join(e.fields), e.code,
                                                          e.message))
                        if r.success:
                            if r.created:
                                report.created += 1
                            else:
                                report.updated += 1
                    report.total += len(rows)
                    if progress is not None:
                        progress(len(rows))
                if report.issues and not partial:
                    raise ImportFailed(report)
            report.committed = True
        finally:
            if error_file is not None:
                write_error_file(error_file, report.issues)
    return report


def write_error_file(path: str | Path, issues: Sequence[RowIssue]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        w = csv.writer(out)
        w.writerow(["row", "field", "code", "message"])
        for i in issues:
            w.writerow([i.row, i.field, i.code, neutralise(i.message)])


def to_csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()
