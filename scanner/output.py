"""Write the outputs of a scan to `--out`, a local directory or an object-store prefix.

Layout under OUT:

    result.json              the `ScanResult`, indented JSON
    tables/<name>.parquet    the tables of `scanner.tables`
    report.html              the static report of `scanner.report`
    state/                   shard checkpoints (written by the runner, unless --state-dir is set)

`result.json` is written last, so a reader that finds it also finds the
tables and the report of the same scan. Local files are written under a
temporary name and renamed, so a crash never leaves a partial file under the
final name. An object store writes each object whole.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import TYPE_CHECKING

from fsspec.implementations.local import LocalFileSystem

from scanner.report import render_report
from scanner.result import ScanResult
from scanner.storage import StorageOptions, filesystem_for, redact_url, unwritable_error, url_for
from scanner.tables import build_tables, parquet_bytes

if TYPE_CHECKING:
    from scanner.runner import ScanOutcome

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
REPORT_FILE = "report.html"
TABLES_DIR = "tables"


def write_outputs(outcome: ScanOutcome, result: ScanResult, out: str, storage: StorageOptions) -> str:
    """Write the result, the tables and the report under `out`; return the output URL."""
    fs, root = filesystem_for(out, storage)
    root = root.rstrip("/") or "/"
    local = isinstance(fs, LocalFileSystem)
    if local:
        try:
            os.makedirs(os.path.join(root, TABLES_DIR), exist_ok=True)
        except OSError as error:
            raise unwritable_error(root, "--out", error) from None

    def write(relative_path: str, data: bytes) -> None:
        path = f"{root}/{relative_path}"
        if local:
            _write_local(path, data)
        else:
            fs.pipe_file(path, data)

    tables = build_tables(outcome, result)
    for name, table in tables.items():
        write(f"{TABLES_DIR}/{name}.parquet", parquet_bytes(table))
    write(REPORT_FILE, render_report(result, tables["shards"].to_pylist()).encode("utf-8"))
    write(RESULT_FILE, result.to_json().encode("utf-8"))

    location = url_for(fs, root)
    logger.info("wrote %s, %s and %d tables to %s", RESULT_FILE, REPORT_FILE, len(tables), redact_url(location))
    return location


def _write_local(path: str, data: bytes) -> None:
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError as error:
        raise unwritable_error(os.path.dirname(path), "--out", error) from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
