"""Vendor file drops: `raw_landing_sensor` turns new files in the landing zone into raw_prices runs.

Data vendors deliver exports as files. They land under `{prefix}landing/prices/` in the raw store (the S3
bucket, or the local folder with the same keys; layout in resources/raw_store.py). Every minute the sensor
lists that prefix and, for each file *version* it has not seen yet (oldest first, at most
`MAX_FILES_PER_TICK` per tick so a backlog cannot time a tick out):

1. reads and parses it (`normalize_ohlcv` through `read_ohlcv_bytes`) and finds the NYSE sessions it
   covers (`split_by_session`);
2. if the file is usable, requests ONE run of `raw_landing_job` (raw_prices only) for those sessions:
   `partition_key` for a one-session file, a single-run range (the `dagster/asset_partition_range_*`
   tags, the idiom of docs/dagster-notes.md: RunRequest has no `partition_key_range` argument in 1.13)
   for several sessions. The run config points raw_prices at the file and its version, the run key
   `{key}@{version}` makes a re-tick or a reset cursor harmless, and tags name the file;
3. if it is not (unparseable, a row on a non-session, a gap inside its session span, sessions with no
   partition yet), it requests nothing, logs why, and remembers the version so the file is not re-read
   every minute; a new version of the file is looked at again.

A file that vanishes or changes between the listing and the read is left for the next tick; a store that
cannot be reached fails the tick (the cursor does not move). The cursor is JSON:
`{"seen": {key: version}, "floor": ISO time | null}`. `seen` keeps only keys still in the landing zone, and
at most `MAX_TRACKED_FILES` of them; when it overflows, the oldest entries are dropped and `floor` moves
to the newest dropped file's modification time, and files not newer than it count as seen. Landing files
are transient (expire them with a lifecycle rule), so this only matters if nobody cleans up.

The sensor is STOPPED by default: turn it on in the UI where vendor files are expected. Downstream assets
are not run by it; the daily pipeline (or a backfill) picks the new raw partitions up.
"""

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl

from trading_dagster.assets.raw import RAW_PRICES, RawPricesConfig, raw_prices
from trading_dagster.domain.bars import PriceDataError, split_by_session
from trading_dagster.domain.calendar import SessionCalendar
from trading_dagster.partitions import SESSION_TIMEZONE, session_calendar, sessions_partitions_def
from trading_dagster.resources.configured import RawStoreResource
from trading_dagster.resources.raw_store import LandingFile, LandingVersionChanged, RawObjectMissing, RawStore
from trading_dagster.resources.writer_lock import WRITER_TAG

LANDING_KEY_TAG = "trading_dagster/landing_key"
LANDING_VERSION_TAG = "trading_dagster/landing_version"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
MAX_FILES_PER_TICK = 20  # a big export takes seconds to read; a tick must finish well inside 60 s
MAX_TRACKED_FILES = 5000  # about 20 years of one file per session
_MAX_LISTED = 10

raw_landing_job = dg.define_asset_job(
    "raw_landing_job",
    selection=dg.AssetSelection.assets(RAW_PRICES),
    partitions_def=sessions_partitions_def(),
    description="raw_prices (and its check) from one landing file: the runs raw_landing_sensor launches.",
    tags={WRITER_TAG: "raw"},  # queued behind any other writing run (resources/writer_lock.py)
)


# ---------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class LandingPlan:
    """What one landing file version asks for: the contiguous sessions it covers."""

    file: LandingFile
    sessions: tuple[dt.date, ...]
    rows: int

    @property
    def run_key(self) -> str:
        return f"{self.file.key}@{self.file.version}"

    def run_request(self) -> dg.RunRequest:
        config = RawPricesConfig(landing_key=self.file.key, landing_version=self.file.version)
        tags = {LANDING_KEY_TAG: self.file.key, LANDING_VERSION_TAG: self.file.version}
        run_config = dg.RunConfig(ops={raw_prices.op.name: config})
        first, last = self.sessions[0].isoformat(), self.sessions[-1].isoformat()
        if first == last:
            return dg.RunRequest(run_key=self.run_key, run_config=run_config, tags=tags, partition_key=first)
        # one run for the whole file: the window must hold every row (raw_prices refuses rows outside it)
        return dg.RunRequest(
            run_key=self.run_key,
            run_config=run_config,
            tags={**tags, RANGE_START_TAG: first, RANGE_END_TAG: last},
        )


def latest_partition_session(today: dt.date, calendar: SessionCalendar) -> dt.date | None:
    """The newest session that is a partition on `today` (New York): today's if it is a session."""
    return today if calendar.is_session(today) else calendar.previous_session(today)


def _listed(days: Sequence[dt.date]) -> str:
    more = f" and {len(days) - _MAX_LISTED} more" if len(days) > _MAX_LISTED else ""
    return ", ".join(str(d) for d in days[:_MAX_LISTED]) + more


def plan_landing_file(
    store: RawStore, file: LandingFile, calendar: SessionCalendar, latest_session: dt.date | None
) -> LandingPlan:
    """Read and check one landing file version; PriceDataError (naming the file) if no run may ingest it."""
    bars = store.read_landing_bars(file.key, file.version)
    where = f"landing file {store.location(file.key)}"
    try:
        parts = split_by_session(bars, calendar)  # a row on a weekend, a holiday or with no date raises
    except PriceDataError as exc:
        raise PriceDataError(f"{where}: {exc}") from None
    sessions = tuple(parts)
    if not sessions:
        raise PriceDataError(f"{where}: holds no rows")
    gaps = [s for s in calendar.between(sessions[0], sessions[-1]) if s not in parts]
    if gaps:
        raise PriceDataError(
            f"{where}: covers {sessions[0]}..{sessions[-1]} but has no rows for {len(gaps)} session(s) in "
            f"between: {_listed(gaps)}. One run ingests a whole file, so a file must cover consecutive "
            "sessions; ask the vendor for the missing days or split the file."
        )
    if latest_session is None or sessions[-1] > latest_session:
        future = [s for s in sessions if latest_session is None or s > latest_session]
        raise PriceDataError(
            f"{where}: has rows for session(s) that have no partition yet (latest is {latest_session}): "
            f"{_listed(future)}"
        )
    return LandingPlan(file=file, sessions=sessions, rows=bars.height)


# ------------------------------------------------------------------------------------------------ cursor


@dataclass
class LandingCursor:
    seen: dict[str, str] = field(default_factory=dict)
    floor: dt.datetime | None = None

    @classmethod
    def parse(cls, text: str | None) -> "LandingCursor":
        """The cursor from its JSON; an empty or unreadable cursor starts afresh (run keys still dedupe)."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            floor = data.get("floor")
            return cls(
                seen={str(k): str(v) for k, v in dict(data.get("seen", {})).items()},
                floor=dt.datetime.fromisoformat(floor) if floor else None,
            )
        except (ValueError, TypeError, AttributeError):
            return cls()

    def dumps(self) -> str:
        floor = self.floor.isoformat() if self.floor else None
        return json.dumps({"seen": dict(sorted(self.seen.items())), "floor": floor}, separators=(",", ":"))

    def is_new(self, file: LandingFile) -> bool:
        if file.key in self.seen:
            return self.seen[file.key] != file.version
        return self.floor is None or file.modified > self.floor

    def bounded(self, listing: Sequence[LandingFile], max_tracked: int) -> "LandingCursor":
        """Only keys still listed; past `max_tracked`, drop the oldest and raise the floor past them."""
        present = [f for f in listing if f.key in self.seen]
        present.sort(key=lambda f: (f.modified, f.key))
        floor = self.floor
        dropped = present[: max(0, len(present) - max_tracked)]
        if dropped:
            floor = max(floor or dropped[-1].modified, dropped[-1].modified)
        kept = present[len(dropped) :]
        return LandingCursor(seen={f.key: self.seen[f.key] for f in kept}, floor=floor)


# -------------------------------------------------------------------------------------------- evaluation


@dataclass
class LandingTick:
    plans: list[LandingPlan]  # one run each
    rejected: list[str]  # why each unusable file version was not ingested
    deferred: list[str]  # files that vanished or changed while read: looked at again next tick
    pending: int  # new files left for the next tick (over MAX_FILES_PER_TICK)
    cursor: LandingCursor
    listed: int

    @property
    def run_requests(self) -> list[dg.RunRequest]:
        return [plan.run_request() for plan in self.plans]

    def skip_reason(self, where: str) -> str:
        if self.rejected:
            more = f" (and {len(self.rejected) - 3} more)" if len(self.rejected) > 3 else ""
            return (
                f"{len(self.rejected)} landing file(s) not ingested: " + " | ".join(self.rejected[:3]) + more
            )
        if self.deferred:
            return "; ".join(self.deferred[:3])
        return f"no new or changed files in {where} ({self.listed} file(s) listed, all seen)"


def evaluate_landing(
    store: RawStore,
    cursor: LandingCursor,
    calendar: SessionCalendar,
    latest_session: dt.date | None,
    max_files: int = MAX_FILES_PER_TICK,
    max_tracked: int = MAX_TRACKED_FILES,
) -> LandingTick:
    """One sensor tick without Dagster's context: what to run, what to reject, the next cursor."""
    listing = store.list_landing()
    new = sorted((f for f in listing if cursor.is_new(f)), key=lambda f: (f.modified, f.key))
    seen = dict(cursor.seen)
    plans: list[LandingPlan] = []
    rejected: list[str] = []
    deferred: list[str] = []
    for file in new[:max_files]:
        try:
            plan = plan_landing_file(store, file, calendar, latest_session)
        except (RawObjectMissing, LandingVersionChanged) as exc:
            deferred.append(f"looked at again next tick: {exc}")
            continue
        except (PriceDataError, pl.exceptions.PolarsError) as exc:
            rejected.append(f"{exc} [version {file.version}; a new version of the file is looked at again]")
        else:
            plans.append(plan)
        seen[file.key] = file.version
    next_cursor = LandingCursor(seen=seen, floor=cursor.floor).bounded(listing, max_tracked)
    return LandingTick(
        plans=plans,
        rejected=rejected,
        deferred=deferred,
        pending=max(0, len(new) - max_files),
        cursor=next_cursor,
        listed=len(listing),
    )


@dg.sensor(
    job=raw_landing_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "New or changed vendor files under landing/prices/ in the raw store: one raw_prices run per file "
        "version, for the sessions the file covers. Unusable files are logged and skipped."
    ),
)
def raw_landing_sensor(context: dg.SensorEvaluationContext, raw_store: RawStoreResource) -> dg.SensorResult:
    store = raw_store.get()
    calendar = session_calendar()
    today = dt.datetime.now(ZoneInfo(SESSION_TIMEZONE)).date()
    tick = evaluate_landing(
        store, LandingCursor.parse(context.cursor), calendar, latest_partition_session(today, calendar)
    )
    for message in tick.rejected:
        context.log.warning(message)
    for message in tick.deferred:
        context.log.info(message)
    if tick.pending:
        context.log.info(f"{tick.pending} more new landing file(s) left for the next tick")
    for plan in tick.plans:
        span = f"{plan.sessions[0]}..{plan.sessions[-1]}" if len(plan.sessions) > 1 else f"{plan.sessions[0]}"
        context.log.info(f"requesting a raw_landing_job run for {plan.run_key}: {plan.rows} rows, {span}")
    if tick.plans:
        return dg.SensorResult(run_requests=tick.run_requests, cursor=tick.cursor.dumps())
    skip = tick.skip_reason(store.location(store.landing_prefix))
    return dg.SensorResult(skip_reason=skip, cursor=tick.cursor.dumps())
