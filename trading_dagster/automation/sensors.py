"""Vendor file drops: `raw_landing_sensor` turns new files in the landing zone into raw_prices runs.

Data vendors deliver exports as files. They land under `{prefix}landing/prices/` in the raw store (the S3
bucket, or the local folder with the same keys; layout in resources/raw_store.py). Every minute the sensor
lists that prefix and, for each file *version* it has not seen yet (oldest first, at most
`MAX_FILES_PER_TICK` per tick so a backlog cannot time a tick out):

1. reads and parses it (`RawStore.read_landing_delivery`) and sorts its rows as the run will
   (`raw_merge.prepare_delivery`, judged at the tick's time): rows on no closed session (a weekend or
   holiday, a future or partial session) are rejected rows the run keeps and names, never a reason to skip
   the file; the sessions it covers are its first..last accepted session, gaps included (the run records a
   gap as an outage, decision 0004 section 2);
2. if the file is usable, requests ONE run of `raw_landing_job` (raw_prices only) for those sessions:
   `partition_key` for a one-session file, a single-run range (the `dagster/asset_partition_range_*`
   tags, the idiom of docs/dagster-notes.md: RunRequest has no `partition_key_range` argument in 1.13)
   for several sessions. The run config points raw_prices at the file, its version and the tick's time
   (`as_of`, so the run rejects exactly the rows the tick did), and it merges like any import; the run key
   `{key}@{version}` makes a re-tick or a reset cursor harmless, and tags name the file;
3. if it is not (file-level garbage: unparseable, two columns for one field, dates shifted onto closed
   days, no row on any closed session), it requests nothing, logs why, and remembers the version so the
   file is not re-read every minute; a new version of the file is looked at again.

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

import dagster as dg
import polars as pl

from trading_dagster.assets.raw import RAW_PRICES, RawPricesConfig, raw_prices
from trading_dagster.domain.bars import PriceDataError
from trading_dagster.domain.calendar import SessionCalendar
from trading_dagster.domain.raw_merge import prepare_delivery, refuse_if_nothing_accepted
from trading_dagster.partitions import session_calendar, sessions_partitions_def
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
    """What one landing file version asks for: the contiguous sessions it covers (first..last accepted)."""

    file: LandingFile
    sessions: tuple[dt.date, ...]
    rows: int
    as_of: dt.datetime  # the tick's time: the run judges future sessions against it, as the tick did
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> rows the run will reject
    empty: tuple[dt.date, ...] = ()  # sessions in the span without a row: outages the run will record

    @property
    def run_key(self) -> str:
        return f"{self.file.key}@{self.file.version}"

    def describe(self) -> str:
        span = f"{self.sessions[0]}..{self.sessions[-1]}" if len(self.sessions) > 1 else f"{self.sessions[0]}"
        text = f"{self.rows} rows, {span}"
        if self.rejected:
            text += "; rejected rows: " + ", ".join(f"{r} {n}" for r, n in self.rejected.items())
        if self.empty:
            text += f"; sessions without a row (outages): {_listed(self.empty)}"
        return text

    def run_request(self) -> dg.RunRequest:
        config = RawPricesConfig(
            landing_key=self.file.key, landing_version=self.file.version, as_of=self.as_of.isoformat()
        )
        tags = {LANDING_KEY_TAG: self.file.key, LANDING_VERSION_TAG: self.file.version}
        run_config = dg.RunConfig(ops={raw_prices.op.name: config})
        first, last = self.sessions[0].isoformat(), self.sessions[-1].isoformat()
        if first == last:
            return dg.RunRequest(run_key=self.run_key, run_config=run_config, tags=tags, partition_key=first)
        # one run for the whole file: the window must hold every bar (raw_prices refuses bars outside it)
        return dg.RunRequest(
            run_key=self.run_key,
            run_config=run_config,
            tags={**tags, RANGE_START_TAG: first, RANGE_END_TAG: last},
        )


def _listed(days: Sequence[dt.date]) -> str:
    more = f" and {len(days) - _MAX_LISTED} more" if len(days) > _MAX_LISTED else ""
    return ", ".join(str(d) for d in days[:_MAX_LISTED]) + more


def plan_landing_file(
    store: RawStore, file: LandingFile, calendar: SessionCalendar, now: dt.datetime
) -> LandingPlan:
    """Read and sort one landing file version as its run will (at `now`); PriceDataError (naming the file)
    if no run may ingest it."""
    vendor = store.read_landing_delivery(file.key, file.version)
    where = f"landing file {store.location(file.key)}"
    try:
        delivery = prepare_delivery(vendor.rows, calendar, now)
        refuse_if_nothing_accepted(delivery)
    except PriceDataError as exc:
        raise PriceDataError(f"{where}: {exc}") from None
    if not delivery.span:
        raise PriceDataError(f"{where}: holds no rows")
    rejected = dict(delivery.rejected.group_by("reason").len().sort("reason").iter_rows())
    return LandingPlan(
        file=file,
        sessions=delivery.span,
        rows=delivery.rows_read,
        as_of=now,
        rejected=rejected,
        empty=delivery.empty_sessions,
    )


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
    now: dt.datetime,
    max_files: int = MAX_FILES_PER_TICK,
    max_tracked: int = MAX_TRACKED_FILES,
) -> LandingTick:
    """One sensor tick without Dagster's context: what to run, what to reject, the next cursor. `now`
    (timezone-aware): the tick's time, which the future-session rule judges against."""
    listing = store.list_landing()
    new = sorted((f for f in listing if cursor.is_new(f)), key=lambda f: (f.modified, f.key))
    seen = dict(cursor.seen)
    plans: list[LandingPlan] = []
    rejected: list[str] = []
    deferred: list[str] = []
    for file in new[:max_files]:
        try:
            plan = plan_landing_file(store, file, calendar, now)
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
    tick = evaluate_landing(store, LandingCursor.parse(context.cursor), session_calendar(), dt.datetime.now(dt.UTC))
    for message in tick.rejected:
        context.log.warning(message)
    for message in tick.deferred:
        context.log.info(message)
    if tick.pending:
        context.log.info(f"{tick.pending} more new landing file(s) left for the next tick")
    for plan in tick.plans:
        context.log.info(f"requesting a raw_landing_job run for {plan.run_key}: {plan.describe()}")
    if tick.plans:
        return dg.SensorResult(run_requests=tick.run_requests, cursor=tick.cursor.dumps())
    skip = tick.skip_reason(store.location(store.landing_prefix))
    return dg.SensorResult(skip_reason=skip, cursor=tick.cursor.dumps())
