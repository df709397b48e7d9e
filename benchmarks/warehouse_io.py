"""The warehouse IO manager's writes and loads on the full dataset's stage outputs: the previous code against
the current one, in the same run, interleaved.

    python3 -m uv run python benchmarks/warehouse_io.py [--cache /tmp/stage-cache] [--repeats 3]

Needs the stage outputs of the full shared dataset as Parquet (`indicators`, `cleaned`, `signals`, `orders`
.parquet, as `/tmp/stage-cache/make.py` writes them). Each variant runs in a child process of its own, so
its peak RSS is its own; the variants alternate, `--repeats` times.

  write  a frame into a fresh warehouse table the way the IO manager does (create the table, insert by name,
         close: DuckDB checkpoints on close): `old` = the frame's Arrow table as it comes (one record batch
         for a frame built in one piece), `new` = `row_group_batches` (one DuckDB row group per batch). The
         frame is given as a domain function returns it (one chunk) and, for indicators, as read from
         Parquet (31 chunks of ~123,000 rows). Read back and compared: same rows, same order.
  load   the signals step's indicators input (3.8 M rows): `old` = every column, `pl.DataFrame(arrow)` (the
         stock type handler), `new` = the LazyFrame input, collecting the columns the default strategies
         read. Peak RSS: sampled every 10 ms over the RSS before the write or load (the frame already in memory).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path("/tmp/stage-cache")


def rss_gib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class PeakRss:
    """The highest RSS sampled every 10 ms while the block runs, over the RSS when it starts, GiB."""

    def __enter__(self) -> PeakRss:
        import threading

        self.base = self.peak = rss_gib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_gib())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_gib())

    @property
    def gib(self) -> float:
        return self.peak - self.base


def frame(cache: Path, name: str, chunks: str):
    import polars as pl

    df = pl.read_parquet(cache / f"{name}.parquet")
    return df.rechunk() if chunks == "one" else df


def write(cache: Path, name: str, chunks: str, variant: str, workdir: Path) -> dict:
    import duckdb
    import polars as pl

    from trading_dagster.resources.warehouse import row_group_batches

    df = frame(cache, name, chunks)
    db = workdir / f"{name}-{variant}.duckdb"
    cpu = cpu_s()
    with PeakRss() as rss:
        t = time.perf_counter()
        obj_arrow = df.to_arrow()
        if variant == "new":
            obj_arrow = row_group_batches(obj_arrow)
        con = duckdb.connect(str(db))
        con.execute("create schema s")
        con.execute("create table if not exists s.t as select * from obj_arrow limit 0")
        t_insert = time.perf_counter()
        con.execute("insert into s.t by name select * from obj_arrow")
        t_close = time.perf_counter()
        con.close()  # checkpoints
        done = time.perf_counter()
    cpu = cpu_s() - cpu
    size = sum(p.stat().st_size for p in workdir.glob(f"{name}-{variant}.duckdb*")) / 2**30
    peak = rss.gib
    with duckdb.connect(str(db), read_only=True) as con:
        back = pl.DataFrame(con.execute("select * from s.t").arrow())
    return {
        "s": done - t, "cpu_s": cpu, "insert_s": t_close - t_insert, "close_s": done - t_close, "file_gib": size,
        "peak_gib": peak, "equal": back.equals(df),
    }


SIGNAL_COLUMNS = ["symbol", "session", "close", "sma_20", "sma_50", "rsi_14", "high_52w", "pct_below_high_52w"]


def load(cache: Path, variant: str, workdir: Path) -> dict:
    import duckdb
    import polars as pl

    from trading_dagster.resources.warehouse import in_write_order, lazy_table

    db = workdir / "warehouse.duckdb"
    select = "SELECT * FROM indicators.indicators WHERE session >= '2008-01-01' AND session < '2018-01-01'"
    cpu = cpu_s()
    with PeakRss() as rss:
        t = time.perf_counter()
        if variant == "old":
            with duckdb.connect(str(db)) as con:
                loaded = pl.DataFrame(con.execute(select).arrow())
            df = loaded.select(SIGNAL_COLUMNS)  # what the step reads (`loaded` stays alive in the step)
        else:
            with duckdb.connect(str(db)) as con:
                schema = pl.DataFrame(con.execute(f"{select} LIMIT 0").arrow()).schema
            df = lazy_table({"database": str(db), "connection_config": {}}, select, schema, "session").select(SIGNAL_COLUMNS).collect()
        s = time.perf_counter() - t
    cpu = cpu_s() - cpu
    peak = rss.gib
    ordered = df.select("session", "symbol").equals(in_write_order(df, "session").select("session", "symbol"))
    return {"s": s, "cpu_s": cpu, "peak_gib": peak, "rows": df.height, "ordered": ordered, "sum_rsi": df["rsi_14"].sum()}


def child(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    if args.op == "write":
        out = write(Path(args.cache), args.name, args.chunks, args.variant, workdir)
    else:
        out = load(Path(args.cache), args.variant, workdir)
    print(json.dumps(out))


def seconds(results: list[dict]) -> str:
    return ", ".join(f"{r['s']:.2f}" for r in results)


def run_child(cache: Path, workdir: Path, *argv: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--cache", str(cache), "--workdir", str(workdir), *argv]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cache", default=str(CACHE))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", action="store_true")
    p.add_argument("--workdir")
    p.add_argument("--op", choices=["write", "load"])
    p.add_argument("--name")
    p.add_argument("--chunks", choices=["one", "parquet"])
    p.add_argument("--variant", choices=["old", "new"])
    args = p.parse_args()
    if args.child:
        child(args)
        return
    cache = Path(args.cache)
    cases = [("indicators", "one"), ("indicators", "parquet"), ("cleaned", "one"), ("signals", "one"), ("orders", "one")]
    with tempfile.TemporaryDirectory(prefix="warehouse-io-") as tmp:
        workdir = Path(tmp)
        print(f"write: create + insert by name + close (checkpoint), fresh table; median of {args.repeats}, "
              "each variant in its own child, alternating")
        for name, chunks in cases:
            results: dict[str, list[dict]] = {"old": [], "new": []}
            for _ in range(args.repeats):
                for variant in ("old", "new"):
                    for f in workdir.glob(f"{name}-{variant}.duckdb*"):
                        f.unlink()
                    results[variant].append(
                        run_child(cache, workdir, "--op", "write", "--name", name, "--chunks", chunks, "--variant", variant)
                    )
            med = {v: {k: statistics.median(r[k] for r in rs) for k in ("s", "cpu_s", "insert_s", "close_s", "file_gib", "peak_gib")}
                   for v, rs in results.items()}
            equal = all(r["equal"] for rs in results.values() for r in rs)
            o, n = med["old"], med["new"]
            print(f"  {name:<10} ({'one chunk' if chunks == 'one' else 'Parquet chunks'}): "
                  f"old {o['s']:.2f} s, CPU {o['cpu_s']:.2f} s (insert {o['insert_s']:.2f}, close {o['close_s']:.2f}; {o['file_gib']:.2f} GiB "
                  f"file; peak +{o['peak_gib']:.2f} GiB) [{seconds(results['old'])}]  "
                  f"new {n['s']:.2f} s, CPU {n['cpu_s']:.2f} s (insert {n['insert_s']:.2f}, close {n['close_s']:.2f}; {n['file_gib']:.2f} GiB; "
                  f"peak +{n['peak_gib']:.2f}) [{seconds(results['new'])}]  "
                  f"ratio {o['s'] / n['s']:.2f}x; read back equal, same order: {equal}", flush=True)
        # the indicators table for the loads, written by the new path
        import duckdb
        import polars as pl

        from trading_dagster.resources.warehouse import row_group_batches

        obj_arrow = row_group_batches(pl.read_parquet(cache / "indicators.parquet").to_arrow())  # noqa: F841
        with duckdb.connect(str(workdir / "warehouse.duckdb")) as con:
            con.execute("create schema indicators")
            con.execute("create table indicators.indicators as select * from obj_arrow")
        del obj_arrow
        print(f"load: the signals step's indicators input, {len(SIGNAL_COLUMNS)} of 23 columns kept; median of "
              f"{args.repeats}")
        results = {"old": [], "new": []}
        for _ in range(args.repeats):
            for variant in ("old", "new"):
                results[variant].append(run_child(cache, workdir, "--op", "load", "--variant", variant))
        for variant, rs in results.items():
            print(f"  {variant}: {statistics.median(r['s'] for r in rs):.2f} s, CPU {statistics.median(r['cpu_s'] for r in rs):.2f} s "
                  f"[{seconds(rs)}], peak +{statistics.median(r['peak_gib'] for r in rs):.2f} GiB "
                  f"over the RSS before the load; {rs[0]['rows']:,} rows, in order: {all(r['ordered'] for r in rs)}")
        same = {(r["rows"], r["sum_rsi"]) for rs in results.values() for r in rs}
        print(f"  same rows and values in both: {len(same) == 1}")


if __name__ == "__main__":
    main()
