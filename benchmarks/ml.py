"""The ML-refined signal on the full shared file (issue 11): features, one yearly model, scoring, and the
out-of-sample precision and recall of the yearly models.

    .venv/bin/python benchmarks/ml.py [--data PATH] [--symbols N] [--period 2015] [--years 2011-2017]
        [--max-rows 200000] [--train-years 3] [--estimator mlp] [--skip-years]

Steps, each timed: the file cleaned by the pipeline's `clean_prices`; the indicators table of every row
(`compute_indicators_anchored`, the pipeline's own function; the pipeline has it in its warehouse); the features
(`ml.feature_frame`) and labels (`ml.labels`) of every row; training the model of `--period` with the asset's
defaults (`ml.training_rows`, `ml.train_model`: MLP (32, 16), 200,000 rows sampled, seed 0), with the process's
peak RSS (VmHWM) after it; scoring that period's rows (`ml.score`); then, unless `--skip-years`, one model per
year of `--years`, each judged on its own year's rows (`ml.period_rows`, `ml.evaluate`). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "us_equities_etfs_daily_2008_2017.parquet"


def peak_rss_gib() -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 2**20


def compare(bars, indicators, probabilities, calendar, first: int, last: int, floors: str) -> list[dict]:
    """Each base strategy of the shipped config unfiltered against filtered by the yearly models (each session
    scored by its year's model), over first..last, the reference conventions, $10 M, 1 bp fees, 5 bp slippage."""
    import datetime as dt

    from trading_dagster.domain.strategies import DEFAULT_STRATEGIES
    from trading_dagster.research.ml_compare import compare_filter

    window = [("all", dt.date(first, 1, 1), dt.date(last, 12, 31))]
    money = {"notional": 10_000.0, "initial_cash": 10_000_000.0, "fees_bps": 1.0, "slippage_bps": 5.0}
    rows = []
    for base in DEFAULT_STRATEGIES:
        for floor in (float(f) for f in floors.split(",")):
            t = time.perf_counter()
            table = compare_filter(bars, indicators, probabilities, calendar, base, floor, window, **money)
            seconds = round(time.perf_counter() - t, 2)
            for r in table.iter_rows(named=True):
                if r["variant"] == "unfiltered" and floor != float(floors.split(",")[0]):
                    continue  # the same run for every floor
                rows.append({"base": base.name, "floor": floor if r["variant"] == "filtered" else None,
                             "variant": r["variant"], "buys": r["buy_signals"], "trades": r["trades"],
                             "return": round(r["total_return"], 4), "sharpe": round(r["sharpe"], 3),
                             "max_drawdown": round(r["max_drawdown"], 4), "s": seconds})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--symbols", type=int, default=None, help="the first N symbols only")
    parser.add_argument("--period", default="2015")
    parser.add_argument("--years", default="2011-2017")
    parser.add_argument("--max-rows", type=int, default=200_000)
    parser.add_argument("--train-years", type=int, default=3)
    parser.add_argument("--estimator", default="mlp")
    parser.add_argument("--skip-years", action="store_true")
    parser.add_argument("--floors", default="0.5,0.55", help="min_probability values of the filter comparison")
    args = parser.parse_args()

    from benchmarks.shared_file import clean_shared_file
    from trading_dagster.domain.indicators import compute_indicators_anchored
    from trading_dagster.research import ml

    out: dict = {}
    t = time.perf_counter()
    cleaned, sessions, calendar = clean_shared_file(args.data, args.symbols)
    out["clean_s"] = round(time.perf_counter() - t, 2)
    out["bars"], out["symbols"] = cleaned.height, cleaned["symbol"].n_unique()
    bars = cleaned.select("session", "symbol", "open", "close")  # the comparison's backtests

    t = time.perf_counter()
    indicators = compute_indicators_anchored(cleaned, calendar, sessions[0], sessions[-1])
    out["indicators_s"] = round(time.perf_counter() - t, 2)
    del cleaned

    t = time.perf_counter()
    features = ml.feature_frame(indicators)
    out["features_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    label_frame = ml.labels(indicators, calendar, ml.DEFAULT_HORIZON)
    out["labels_s"] = round(time.perf_counter() - t, 2)
    out["feature_rows"], out["labelled_rows"] = features.height, label_frame.height
    out["rss_before_training_gib"] = round(peak_rss_gib(), 2)

    def train(period: str) -> tuple[ml.TrainedModel, float, float]:
        bounds = ml.period_bounds(period)
        t0 = time.perf_counter()
        rows = ml.training_rows(features, label_frame, bounds.start, ml.DEFAULT_HORIZON, args.train_years, calendar)
        t1 = time.perf_counter()
        trained = ml.train_model(rows, estimator=args.estimator, max_rows=args.max_rows)
        return trained, t1 - t0, time.perf_counter() - t1

    trained, select_s, train_s = train(args.period)
    meta = trained.metadata
    out["model"] = {
        "period": args.period,
        "select_rows_s": round(select_s, 2),
        "train_s": round(train_s, 2),
        "window_rows": meta["training_window"]["rows"],
        "sampled_rows": meta["sampled_rows"],
        "fit_rows": meta["fit_window"]["rows"],
        "iterations": int(trained.model.pipeline[-1].n_iter_) if args.estimator == "mlp" else None,
        "bytes": len(trained.data),
        "validation": meta["validation"],
        "peak_rss_gib": round(peak_rss_gib(), 2),
    }
    bounds = ml.period_bounds(args.period)
    year = indicators.filter(indicators["session"].is_between(bounds.start, bounds.end))
    t = time.perf_counter()
    scored = ml.score(trained.model, year)
    out["score"] = {"rows": scored.height, "scored": scored["probability"].drop_nulls().len(),
                    "s": round(time.perf_counter() - t, 2)}
    print(json.dumps(out, indent=1), flush=True)

    if not args.skip_years:
        first, last = (int(y) for y in args.years.split("-"))
        years, scores = [], []
        for y in range(first, last + 1):
            trained, _, train_s = train(str(y))
            rows = ml.period_rows(features, label_frame, ml.period_bounds(str(y)))
            oos = ml.evaluate(trained.model, rows)
            years.append({"year": y, "train_s": round(train_s, 1), **{k: round(v, 4) for k, v in oos.items()}})
            print(json.dumps(years[-1]), flush=True)
            b = ml.period_bounds(str(y))
            scores.append(ml.score(trained.model, indicators.filter(indicators["session"].is_between(b.start, b.end))))
        out["years"] = years
        out["filter_comparison"] = compare(bars, indicators, pl.concat(scores), calendar, first, last, args.floors)
    out["peak_rss_gib"] = round(peak_rss_gib(), 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
