"""The security master as a Dagster resource: `TRADING_DAGSTER_SECURITY_MASTER` (a folder of LEAN map files or
a CSV `symbol,security_id,valid_from,valid_to`; see `domain/security_master.py`), or none.

Without a master nothing changes: a symbol is one security all along. The parsed master is cached per
process by the path and the files' sizes and modification times, so the four assets of a run that read it
parse a LEAN folder (thousands of small files) once, and an edited file is read again.
"""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg
from pydantic import Field

from trading_dagster.domain.security_master import SecurityMaster, read_security_master


class SecurityMasterResource(dg.ConfigurableResource):
    """Which security (company) a ticker meant on a day: indicators never span two securities, a position in
    a security past its valid_to is closed at its last close (decision 0004, section 4)."""

    path: str | None = Field(
        default=None,
        description="a folder of QuantConnect LEAN map files, or a CSV symbol,security_id,valid_from,valid_to; "
        "unset: no security master (every symbol is one security)",
    )

    def get(self) -> SecurityMaster | None:
        if not self.path:
            return None
        return _load(self.path, _signature(Path(self.path)))


def _signature(path: Path) -> tuple:
    """What changes when the master's content may have: (name, size, mtime) of the file or of every file."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return tuple((p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in files)


@functools.lru_cache(maxsize=4)
def _load(path: str, signature: tuple) -> SecurityMaster:
    return read_security_master(path)
