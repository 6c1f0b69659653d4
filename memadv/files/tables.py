"""Parquet tables with memadv metadata (dataset, fingerprints, run parameters) in the file's
key-value metadata under the key ``memadv``; written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from memadv.files.atomic import atomic_path
from memadv.errors import SchemaError

META_KEY = b"memadv"


def write_table(path: str | Path, df: pd.DataFrame, meta: dict[str, Any]) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    existing = table.schema.metadata or {}
    table = table.replace_schema_metadata({**existing, META_KEY: json.dumps(meta, default=str).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _unreadable(path: str | Path, e: Exception) -> SchemaError:
    return SchemaError(f"{path} is not a readable parquet file (empty, half-written or not parquet; the command "
                       f"that wrote it rebuilds it): {' '.join(str(e).split())}")


def read_meta(path: str | Path) -> dict[str, Any]:
    """The memadv metadata of a parquet file, from its footer alone; SchemaError (one line) when the
    file is missing, empty, half-written or not parquet, or was not written by memadv."""
    try:
        md = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError) as e:  # a 0-byte or truncated file has no footer
        raise _unreadable(path, e) from None
    if META_KEY not in md:
        raise SchemaError(f"{path} has no memadv metadata; it was not written by memadv")
    return json.loads(md[META_KEY])


def read_table(path: str | Path, columns: list[str] | None = None,
               required: list[str] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path} does not exist")
    try:
        df = pq.read_table(path, columns=columns).to_pandas()
    except (pa.ArrowInvalid, OSError) as e:
        raise _unreadable(path, e) from None
    if required:
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise SchemaError(f"{path} lacks columns {missing}; expected {required}")
    return df, read_meta(path)


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: str | None = None) -> list[str]:
    """The lines of a Markdown table, ``| a | b |``, for every table memadv writes (report, summaries).

    Each cell is ``str(cell)`` with ``|`` escaped as ``\\|`` and newlines as spaces, so text such as
    ``|change| < 5`` stays in its cell (GitHub-flavoured Markdown tables, as Python-Markdown's
    ``tables`` extension and GitHub read them). ``align``: one letter per column, ``l`` (``---``) or
    ``r`` (``---:``); default all ``l``. Raises ValueError if ``align`` or a row has another length.
    """
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = list(header)
    align = align or "l" * len(header)
    if len(align) != len(header):
        raise ValueError(f"markdown_table: align {align!r} has {len(align)} columns, the header {len(header)}")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
    for r in rows:
        r = list(r)
        if len(r) != len(header):
            raise ValueError(f"markdown_table: a row has {len(r)} cells, the header {len(header)}: {r}")
        lines.append("| " + " | ".join(cell(v) for v in r) + " |")
    return lines
