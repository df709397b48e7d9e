"""`research/signal_model` and `research/ml_evaluation` (issue 11) on the shipped real sample.

The warehouse holds the indicators table computed by the pipeline's own function from the sample's cleaned
prices (42 symbols, 2008-2017). A model for 2011 is trained with a small config (a few seconds): its artifacts
are where the metadata says, metadata.json's sha256 is the model's, a second materialization writes the same
bytes, and it trained on nothing dated 2011. The evaluation scores the periods that have a model. The same on
S3 (the moto server).
"""

import datetime as dt
import json
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from trading_dagster.assets.ml import (
    EVALUATION_COLUMNS,
    ML_ASSETS,
    MODEL_NAME,
    ml_evaluation,
    ml_evaluation_job,
    ml_filter_comparison,
    model_job,
    model_partitions,
    signal_model,
)
from trading_dagster.assets.portal import WarehouseReader
from trading_dagster.research import ml
from trading_dagster.resources.configured import (
    LocalRawStoreResource,
    S3RawStoreResource,
    TradingConfigResource,
)
from trading_dagster.resources.warehouse import WarehouseIOManager
from trading_dagster_tests.research.conftest import write_warehouse

SMALL = {"max_rows": 5000, "hidden_layer_sizes": [16, 8], "max_iter": 60, "train_years": 2}
NODE = "research__signal_model"


@pytest.fixture(scope="module")
def indicators(sample_indicators) -> pl.DataFrame:
    return sample_indicators


@pytest.fixture(scope="module")
def database(indicators, cleaned, tmp_path_factory) -> str:
    return write_warehouse(
        tmp_path_factory.mktemp("ml") / "warehouse.duckdb",
        {"indicators.indicators": indicators, "prices.cleaned_prices": cleaned},
    )


def train(database: str, raw_store, period: str = "2011", **config):
    return dg.materialize(
        [signal_model],
        partition_key=period,
        resources={"warehouse": WarehouseReader(database=database), "raw_store": raw_store},
        run_config={"ops": {NODE: {"config": {**SMALL, **config}}}},
        raise_on_error=False,
    )


def metadata_of(result) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(NODE)[0].metadata.items()}


def test_the_model_asset_writes_its_artifacts_where_the_metadata_says(database, tmp_path) -> None:
    result = train(database, LocalRawStoreResource(local_root=str(tmp_path)))
    assert result.success
    meta = metadata_of(result)
    assert meta["artifact_key"] == "models/signal_model/2011/"
    model_path = Path(meta["model_location"])
    assert model_path == tmp_path / "models" / "signal_model" / "2011" / "model.pkl"
    data = model_path.read_bytes()
    written = json.loads(Path(meta["metadata_location"]).read_text())
    assert written["sha256"] == ml.sha256(data) == meta["sha256"]
    assert written["period"] == "2011" and written["features"] == list(ml.FEATURES)
    # trained only on rows whose label was known before 2011 (the sample's first complete rows are 2009)
    assert written["training_window"]["last_label_session"] < "2011-01-01"
    assert "2009-01-01" <= written["training_window"]["first_session"] < "2009-03-01"
    assert meta["rows"] == written["training_window"]["rows"] > 10_000 and meta["sampled_rows"] == 5000
    assert 0 < meta["validation_precision"] <= 1 and 0 < meta["validation_auc"] < 1
    assert meta["estimator"] == "mlp" and meta["params"]["hidden_layer_sizes"] == [16, 8]
    model = ml.model_from_bytes(data, written["sha256"])
    p = model.predict_proba(ml.feature_matrix(ml.feature_frame(_rows_2011(database))))
    assert p.shape == (200,) and p.min() >= 0 and p.max() <= 1

    again = train(database, LocalRawStoreResource(local_root=str(tmp_path)))
    assert again.success and metadata_of(again)["sha256"] == meta["sha256"]
    assert model_path.read_bytes() == data


def _rows_2011(database: str) -> pl.DataFrame:
    return WarehouseReader(database=database).query(
        "select * from indicators.indicators where session >= '2011-06-01' and sma_200 is not null "
        "order by session, symbol limit 200"
    )


def _warehouse(path: Path, frame: pl.DataFrame | None) -> str:
    return write_warehouse(path, {"indicators.indicators": frame})


def test_missing_data_or_features_fail_naming_the_fix(indicators, tmp_path) -> None:
    store = LocalRawStoreResource(local_root=str(tmp_path / "lake"))
    early = indicators.filter(pl.col("session") < dt.date(2011, 1, 1))
    cases = {
        "no indicators.indicators in the warehouse yet": None,
        "lacks the feature columns ['ret_1', 'ret_5'": early.drop("ret_1", "ret_5"),  # a table from before
        "volume_ratio_20 is null in every row": early.with_columns(pl.lit(None, pl.Float64).alias("volume_ratio_20")),
        "holds no row in 2009-01-01..2011-01-01": early.filter(pl.col("session") < dt.date(2009, 1, 1)),
    }
    for i, (message, frame) in enumerate(cases.items()):
        result = train(_warehouse(tmp_path / f"w{i}.duckdb", frame), store)
        assert not result.success, message
        assert message in result.failure_data_for_node(NODE).user_failure_data.description
    assert not store.get().has_artifact("models/signal_model/2011/model.pkl")
    result = train(_warehouse(tmp_path / "ok.duckdb", early), store, estimator="forest")
    assert "estimator 'forest' is not one of ['logistic', 'mlp']" in (
        result.failure_data_for_node(NODE).user_failure_data.description
    )


def test_the_evaluation_scores_every_period_with_a_model(database, tmp_path) -> None:
    store = LocalRawStoreResource(local_root=str(tmp_path))
    for period in ("2011", "2013"):
        assert train(database, store, period=period).success
    result = dg.materialize(
        [ml_evaluation],
        resources={
            "warehouse": WarehouseReader(database=database),
            "raw_store": store,
            "io_manager": WarehouseIOManager(database=str(tmp_path / "out.duckdb")),
        },
        raise_on_error=False,
    )
    assert result.success
    table = result.output_for_node("research__ml_evaluation")
    assert table.columns == EVALUATION_COLUMNS and table["period"].to_list() == ["2011", "2013"]
    assert (table["rows"] > 9000).all()  # 42 symbols x ~250 sessions
    for column in ("precision", "recall", "base_rate", "auc"):
        assert table[column].is_between(0, 1).all(), column
    # the figures are the model's on that period's own rows, recomputed here
    indicators = WarehouseReader(database=database).query("select * from indicators.indicators")
    from trading_dagster.domain.calendar import nyse_calendar

    cal = nyse_calendar().sessions
    rows = ml.period_rows(ml.feature_frame(indicators), ml.labels(indicators, cal, 5), ml.period_bounds("2013"))
    meta = json.loads(store.get().get_artifact("models/signal_model/2013/metadata.json"))
    model = ml.model_from_bytes(store.get().get_artifact("models/signal_model/2013/model.pkl"), meta["sha256"])
    expected = ml.evaluate(model, rows)
    got = table.filter(pl.col("period") == "2013").row(0, named=True)
    assert got["rows"] == expected["rows"] and got["precision"] == pytest.approx(expected["precision"])
    plot = result.asset_materializations_for_node("research__ml_evaluation")[0].metadata["plot"].value
    assert plot.startswith("![Out-of-sample precision and recall](data:image/png;base64,")


def test_on_s3_the_artifacts_are_objects_under_the_prefix(database, s3_endpoint, monkeypatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    resource = S3RawStoreResource(
        bucket=f"models-{uuid.uuid4().hex[:10]}", prefix="lake", region_name="us-east-1", endpoint_url=s3_endpoint
    )
    store = resource.get()
    store.client.create_bucket(Bucket=resource.bucket)
    result = train(database, resource)
    assert result.success
    meta = metadata_of(result)
    assert meta["model_location"] == f"s3://{resource.bucket}/lake/models/signal_model/2011/model.pkl"
    assert ml.sha256(store.get_artifact("models/signal_model/2011/model.pkl")) == meta["sha256"]
    assert json.loads(store.get_artifact("models/signal_model/2011/metadata.json"))["sha256"] == meta["sha256"]


def test_partitions_jobs_and_exports() -> None:
    keys = model_partitions(last_session=dt.date(2017, 11, 10)).get_partition_keys()
    assert keys == [str(y) for y in range(2010, 2018)]
    monthly = model_partitions("monthly", last_session=dt.date(2017, 11, 10)).get_partition_keys()
    assert monthly[0] == "2010-01" and monthly[-1] == "2017-11" and len(monthly) == 95
    assert all(ml.period_bounds(k) for k in monthly[:3])
    with pytest.raises(ValueError, match="yearly"):
        model_partitions("weekly")  # type: ignore[arg-type]
    keys = [a.key for a in ML_ASSETS]
    assert keys == [
        dg.AssetKey(["research", "signal_model"]),
        dg.AssetKey(["research", "ml_evaluation"]),
        dg.AssetKey(["research", "ml_filter_comparison"]),
    ]
    assert signal_model.group_names_by_key[signal_model.key] == "research"
    assert dg.AssetKey(["indicators", "indicators"]) in signal_model.asset_deps[signal_model.key]
    assert model_job.name == "model_job" and ml_evaluation_job.name == "ml_evaluation_job"
    assert MODEL_NAME == "signal_model"


def test_the_comparison_backtests_the_base_with_and_without_the_models_filter(database, tmp_path) -> None:
    from trading_dagster.domain.calendar import nyse_calendar
    from trading_dagster.research.ml_compare import compare_filter
    from trading_dagster.resources.configured import BacktestBookResource, CostsConfig, StrategyConfig

    store = LocalRawStoreResource(local_root=str(tmp_path))
    for period in ("2012", "2013"):
        assert train(database, store, period=period).success
    strategies = [
        StrategyConfig(name="rsi", kind="rsi", params={"lower": 35, "upper": 65}, trades=False),
        StrategyConfig(name="rsi_ml", kind="ml_filter", refines="rsi", params={"min_probability": 0.52}),
    ]
    result = dg.materialize(
        [ml_filter_comparison],
        resources={
            "warehouse": WarehouseReader(database=database),
            "raw_store": store,
            "io_manager": WarehouseIOManager(database=str(tmp_path / "out.duckdb")),
            "trading_config": TradingConfigResource(strategies=strategies),
            "backtest_book": BacktestBookResource(ledger_path=str(tmp_path / "b.duckdb"), costs=CostsConfig()),
        },
        run_config={"ops": {"research__ml_filter_comparison": {"config": {"notional": 10000, "initial_cash": 1e6}}}},
        raise_on_error=False,
    )
    assert result.success
    table = result.output_for_node("research__ml_filter_comparison")
    assert table["window"].to_list() == ["2012", "2012", "2013", "2013", "all", "all"]
    assert table["variant"].to_list() == ["unfiltered", "filtered"] * 3
    assert table["first_session"][0] == dt.date(2012, 1, 3) and table["last_session"][-1] == dt.date(2013, 12, 31)
    by = {(r["window"], r["variant"]): r for r in table.iter_rows(named=True)}
    for window in ("2012", "2013", "all"):  # the model kept some buys and dropped others
        assert 0 < by[(window, "filtered")]["buy_signals"] < by[(window, "unfiltered")]["buy_signals"]
    # the same figures from the pure function, each period scored by its own model
    reader = WarehouseReader(database=database)
    indicators = reader.query("select * from indicators.indicators where session between '2011-12-30' and '2013-12-31'")
    cleaned = reader.query("select session, symbol, open, close from prices.cleaned_prices")
    scored = []
    for period in ("2012", "2013"):
        meta = json.loads(store.get().get_artifact(f"models/signal_model/{period}/metadata.json"))
        model = ml.model_from_bytes(store.get().get_artifact(f"models/signal_model/{period}/model.pkl"), meta["sha256"])
        scored.append(ml.score(model, indicators.filter(pl.col("session").dt.year() == int(period))))
    base = TradingConfigResource(strategies=strategies).strategy_specs()[0]
    direct = compare_filter(
        cleaned, indicators, pl.concat(scored), nyse_calendar().sessions, base, 0.52,
        [("2013", dt.date(2013, 1, 2), dt.date(2013, 12, 31))], notional=10_000.0, initial_cash=1e6,
        fees_bps=0.0, slippage_bps=5.0,
    )
    got = table.filter(pl.col("window") == "2013")
    assert got["orders"].to_list() == direct["orders"].to_list()
    assert got["total_pnl"].to_list() == pytest.approx(direct["total_pnl"].to_list(), rel=1e-12)
    meta = result.asset_materializations_for_node("research__ml_filter_comparison")[0].metadata
    assert meta["summary"].value.startswith("rsi over 2012-01-03 .. 2013-12-31: filtered (p >= 0.52)")
    assert meta["plot"].value.startswith("![Filtered against unfiltered](data:image/png;base64,")
