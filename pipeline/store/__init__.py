"""Keeping findings (and events) after a scan: SQLite and Parquet stores.

* :mod:`pipeline.store.sqlite` appends findings and a ``scans`` row to a SQLite file with the
  daemon's state-database schema (:mod:`pipeline.state`), so ``scan --store`` results and the
  daemon's findings can be queried the same way.
* :mod:`pipeline.store.parquet` writes findings (and events) as Parquet datasets partitioned
  by date, for pandas, pyarrow and duckdb.

:func:`load_findings` reads either back into the DataFrame of
:func:`pipeline.analysis.findings_frame`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.schema import ZoneArg


def load_findings(
    store: str | Path, *, tz: ZoneArg = None, scan_id: int | None = None
) -> pd.DataFrame:
    """The findings kept in ``store``: a SQLite file or a Parquet directory.

    ``scan_id`` (SQLite only) keeps the findings one ``scan --store`` run reported. Times are
    in ``tz`` (default: the machine's zone). A finding stored by several scans is one row,
    in its latest version.
    """
    path = Path(store)
    if path.is_dir():
        from pipeline.store.parquet import load_parquet_findings

        if scan_id is not None:
            raise ValueError("scan_id applies to SQLite stores only")
        return load_parquet_findings(path, tz=tz)
    from pipeline.store.sqlite import load_sqlite_findings

    return load_sqlite_findings(path, tz=tz, scan_id=scan_id)


__all__ = ["load_findings"]
