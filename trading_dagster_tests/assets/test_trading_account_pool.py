"""The broker-facing execution assets run in the `trading_account` concurrency pool (deploy/dagster.yaml limits
it to 1), so two runs never plan against, submit to or reconcile the same account at once."""

from trading_dagster.assets.execution import EXECUTION_ASSETS, TRADING_ACCOUNT_POOL
from trading_dagster.definitions import build_definitions


def test_every_asset_using_the_broker_is_in_the_trading_account_pool():
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    users = {a.op.name: a.op.pool for a in graph.assets_defs if a.is_executable and "broker" in a.required_resource_keys}
    assert TRADING_ACCOUNT_POOL == "trading_account"
    assert set(users) == {a.op.name for a in EXECUTION_ASSETS}
    assert set(users.values()) == {"trading_account"}


def test_the_backtest_steps_are_not_in_the_pool():
    """The backtest book is a simulation: its steps must not queue behind (or hold up) the live account."""
    job = build_definitions().resolve_job_def("pipeline_job")
    pools = {node.name: node.definition.pool for node in job.graph.node_dict.values()}
    assert pools, "pipeline_job has no steps"
    assert all(pool is None for pool in pools.values()), pools


def test_each_execution_job_runs_its_broker_step_in_the_pool():
    """What the run coordinator and the executor read: the pool on each step of the sensors' jobs."""
    defs = build_definitions()
    for job_name in ("execution_orders_job", "execution_job", "reconcile_job"):
        job = defs.resolve_job_def(job_name)
        pools = {node.name: node.definition.pool for node in job.graph.node_dict.values()}
        assert pools and set(pools.values()) == {TRADING_ACCOUNT_POOL}, (job_name, pools)
