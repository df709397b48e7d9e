"""The Dagster UI as the trader's admin portal, checked in a real browser (issue 10, "The browser test").

A short history (the demo's first sessions of the shipped sample, then one session on its own, as the daily
schedule would run it, and the next session's raw bars, as a vendor delivers them) goes into a temporary data
folder and DAGSTER_HOME; `dagster-webserver` serves the project's workspace on 127.0.0.1 with the environment
`trading-dagster ui` gives it (the partitions end at the raw store's last session); Playwright for Python
drives Debian's chromium (`/usr/bin/chromium`, since browser downloads are not available here) through the
lineage (every group open), the partition range, the P&L figures and plots, one session's orders, the portal's
pages (upcoming orders, per-strategy equity, configuration, emergency controls), a one-session run launched
from the launchpad, and a portal run launched from the UI whose pages show the webserver's partition range
(so a run worker sees the partitions definition the webserver shows).

The `chromium` fixture is the install step: as root with apt-get it installs the Debian package when missing
(a fresh clone in CI); otherwise the tests skip and say why. Screenshots go to a pytest temp folder, printed.
The instance uses Dagster's DefaultRunCoordinator (no daemon to start): a run launched in the UI starts at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from trading_dagster_tests.ports import PortTaken, on_free_port, port_taken
from trading_dagster_tests.postgres import INSTALL_LOCK

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEMO_SESSIONS = 46  # 2008-01-02 .. 2008-03-07 of the sample
DEMO_LAST = "2008-03-07"  # the demo's last session: 5 signals, 1 order approved, 4 denied
ORDERS_SESSION = "2008-03-10"  # run on its own after the demo: 12 orders, 5 approved
LAUNCH_SESSION = "2008-03-11"  # its raw bars delivered, then launched from the UI: the fills of those orders
PARTITIONS = 48  # 2008-01-02 .. 2008-03-11: the partitions end at the last session with data
STAGES = ["raw_prices", "cleaned_prices", "indicators", "signals", "orders", "executions", "equity", "performance"]
STARTUP_SECONDS = 60
RUN_SECONDS = 90


def _bin(name: str) -> str:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name) or name


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing and we are root; else skip, saying why."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip(f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium")
    if os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing; installing it needs root: sudo apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    t0 = time.monotonic()
    # one apt at a time on the machine: another xdist worker or test session may be installing chromium or
    # PostgreSQL (dpkg's own lock makes a second apt-get fail rather than wait); the same lock file as theirs
    with FileLock(INSTALL_LOCK):
        if CHROMIUM.exists():  # installed while we waited
            return CHROMIUM
        out = subprocess.run(
            [apt, "install", "-y", "--no-install-recommends", "chromium"], env=env, capture_output=True, text=True
        )
        if out.returncode != 0:  # a stale package index on a fresh machine: update once and retry
            subprocess.run([apt, "update"], env=env, capture_output=True, text=True)
            out = subprocess.run(
                [apt, "install", "-y", "--no-install-recommends", "chromium"], env=env, capture_output=True, text=True
            )
    if out.returncode != 0 or not CHROMIUM.exists():
        pytest.skip(f"apt-get could not install chromium (exit {out.returncode}): {out.stderr.strip()[-300:]}")
    print(f"\ninstalled Debian's chromium in {time.monotonic() - t0:.0f} s")
    return CHROMIUM


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{' '.join(cmd[:3])} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"


ONE_SESSION = """
import sys, dagster as dg
from trading_dagster.cli import _quiet_warnings
_quiet_warnings()
from trading_dagster.definitions import build_definitions
from trading_dagster.settings import load_settings
defs = build_definitions(load_settings())
job, quiet = defs.resolve_job_def("pipeline_job"), {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
r = job.execute_in_process(instance=dg.DagsterInstance.get(), partition_key=sys.argv[1], raise_on_error=False,
                           run_config=quiet)
# the next session's raw bars only, as a vendor delivery: the raw store's last session
raw = job.execute_in_process(instance=dg.DagsterInstance.get(), partition_key=sys.argv[2], raise_on_error=False,
                             run_config=quiet, asset_selection=[dg.AssetKey(["raw", "raw_prices"])])
sys.exit(0 if r.success and raw.success else 1)
"""


def _direct_runs(home: Path) -> None:
    """Runs launched in the UI start at once (no daemon in this test): DefaultRunCoordinator."""
    cfg = home / "dagster.yaml"
    text = re.sub(
        r"^run_coordinator:\n(?:[ \t]+.*\n)+",
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n",
        cfg.read_text(),
        flags=re.M,
    )
    cfg.write_text(text)


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    query = b'{"query": "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"}'
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if port_taken(log.read_text()):
                raise PortTaken(f"dagster-webserver: {url} was taken")
            pytest.fail(f"dagster-webserver exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            req = urllib.request.Request(f"{url}/graphql", data=query, headers={"Content-Type": "application/json"})
            body = urllib.request.urlopen(req, timeout=5).read().decode()
            if "RepositoryLocation" in body:
                return
            if "PythonError" in body:
                pytest.fail(f"the code location did not load: {body[:2000]}")
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver not ready after {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A short history in a temp data folder and DAGSTER_HOME, served by dagster-webserver on a free port."""
    root = tmp_path_factory.mktemp("ui_history")
    home, data = root / "dagster_home", root / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADING_DAGSTER_", "DAGSTER_"))}
    env |= {"DAGSTER_HOME": str(home), "TRADING_DAGSTER_DATA_DIR": str(data), "PYTHONWARNINGS": "ignore"}
    t0 = time.monotonic()
    _run([_bin("trading-dagster"), "--dagster-home", str(home), "demo", "--sessions", str(DEMO_SESSIONS)], env, root)
    _run(
        [sys.executable, "-c", ONE_SESSION, ORDERS_SESSION, LAUNCH_SESSION],
        env | {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"},
        REPO,
    )
    history_seconds = time.monotonic() - t0
    # what `trading-dagster ui` sets before it starts dagster dev: historical data, so the raw store's last session
    from trading_dagster.cli import partitions_environment
    from trading_dagster.partitions import LAST_SESSION_ENV
    from trading_dagster.settings import load_settings

    env |= partitions_environment(load_settings(env), env)
    assert env[LAST_SESSION_ENV] == LAUNCH_SESSION
    _direct_runs(home)
    # Dagster shows a "Join the Dagster community" dialog to a new instance, one second after a page mounts,
    # over whatever is there: the instance records it as seen in $DAGSTER_HOME/.nux/nux.yaml (dagster._core.nux),
    # so a test that waited a fixed time before dismissing it failed whenever the page was slower
    (home / ".nux").mkdir(parents=True, exist_ok=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    log = root / "webserver.log"
    t1 = time.monotonic()
    procs: list[subprocess.Popen] = []

    def start(port: int) -> str:
        with log.open("w") as sink:
            procs.append(subprocess.Popen(
                [_bin("dagster-webserver"), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                env=env,
                cwd=REPO,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ))
        url = f"http://127.0.0.1:{port}"
        _wait_for_server(url, procs[-1], log)
        return url

    try:
        url = on_free_port(start)
        shots = tmp_path_factory.mktemp("ui_screenshots")
        print(f"\nhistory {history_seconds:.1f} s, webserver up in {time.monotonic() - t1:.1f} s; screenshots: {shots}")
        yield {"url": url, "shots": shots, "data": data, "log": log, "t0": t0}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGTERM)  # its own session: the webserver and its code server
                    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def page(chromium: Path, ui: dict):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        # and the browser's own record of it (the UI checks both): never shown, never in the way
        context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
        context.set_default_timeout(20_000)
        pg = context.new_page()
        try:
            yield pg
        finally:
            context.close()
            browser.close()


def _open(page, ui: dict, path: str, wait_for: str) -> None:
    page.goto(ui["url"] + path)
    page.get_by_text(wait_for, exact=True).first.wait_for()
    _dismiss_newsletter(page)


def _dismiss_newsletter(page) -> None:
    """Dagster's one-time "Join the Dagster community" dialog must never be up: the instance and the browser
    both record it as seen (`ui`, `page`); if it shows anyway, that is a change in Dagster to look at."""
    assert not page.get_by_text("Join the Dagster community").count(), "Dagster's community dialog is up"


def _shot(page, ui: dict, name: str) -> Path:
    path = ui["shots"] / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def _metadata(body: str, key: str) -> str:
    """The value shown for metadata `key` in the asset overview's table (key, timestamp, value lines)."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    at = lines.index(key)
    value = lines[at + 1]
    return lines[at + 2] if re.search(r"\d(:\d\d)? ?(AM|PM)$", value) else value


def test_lineage_shows_every_stage_from_raw_prices_to_pnl(page, ui):
    _open(page, ui, "/assets/pnl/performance?view=lineage&lineageScope=upstream&lineageDepth=20", "raw_prices")
    for stage in STAGES:
        page.get_by_text(stage, exact=True).first.wait_for()
    _shot(page, ui, "lineage")


def test_performance_shows_formatted_figures_plots_and_the_tear_sheet(page, ui):
    _open(page, ui, "/assets/pnl/performance", "cumulative_return")
    body = page.inner_text("body")
    assert re.fullmatch(r"-?\$[\d,]+\.\d\d", _metadata(body, "final_equity")), body[:3000]
    assert re.fullmatch(r"[+-]\d+\.\d\d%", _metadata(body, "cumulative_return"))
    assert re.fullmatch(r"[+-]\d+\.\d\d%", _metadata(body, "max_drawdown"))
    assert re.fullmatch(r"-?\d+\.\d\d", _metadata(body, "sharpe"))
    float(_metadata(body, "cumulative_return_raw"))  # the raw float is there too, for code
    sheet = ui["data"] / "reports" / "tearsheet.html"
    assert str(sheet) in body and sheet.stat().st_size > 10_000
    _shot(page, ui, "performance")
    page.get_by_text("[Show Markdown]").first.click()  # the plots
    for title in ("Equity against the benchmark", "Drawdown", "Monthly returns", "Daily P&L", "Rolling Sharpe"):
        page.get_by_role("img", name=title).first.wait_for()
    page.wait_for_timeout(600)  # the dialog fades in
    _shot(page, ui, "performance_plots")


def test_equity_plots_draw_the_per_session_figures(page, ui):
    _open(page, ui, "/assets/pnl/equity?view=partitions&partition=2008-03-07", "peak_equity")
    body = page.inner_text("body")
    for key in ("daily_pnl", "drawdown_pct", "exposure_pct"):
        assert key in body
    _shot(page, ui, "equity_partition")
    # the Plots tab by event time: one point per materialization of each figure
    _open(page, ui, "/assets/pnl/equity", "Plots")
    page.get_by_role("button", name="Plots").click()
    page.get_by_role("button", name="Events").click()
    for key in ("daily_pnl", "drawdown_pct", "exposure_pct", "equity"):
        page.get_by_text(key, exact=True).first.wait_for()
    _shot(page, ui, "equity_plots")


def test_one_sessions_orders_are_listed(page, ui):
    _open(page, ui, f"/assets/trading/orders?view=partitions&partition={ORDERS_SESSION}", "reason")
    body = page.inner_text("body")
    rows = [line for line in body.splitlines() if "\tbuy\t" in line or "\tsell\t" in line]
    assert len(rows) >= 5, body[:4000]
    assert any("approved" in r for r in rows) and any("denied" in r for r in rows)
    assert "len" not in body.split("by_status_and_reason", 1)[1].split("\n", 3)[1]
    _shot(page, ui, "orders_session")


def test_the_partitions_end_at_the_last_session_with_data(page, ui):
    """Not at today: every partition shown is a session with data, and the Materialize dialog's span too."""
    _open(page, ui, "/assets/pnl/equity?view=partitions", f"{PARTITIONS} Partitions Selected")
    body = page.inner_text("body")
    assert "2008-01-02" in body and LAUNCH_SESSION in body
    assert "Missing (1)" in body  # LAUNCH_SESSION: its bars are in, the pipeline has not run on it yet
    _shot(page, ui, "partitions")
    page.get_by_role("button", name="Materialize").first.click()
    confirm = page.get_by_role("button", name="Confirm")  # equity and positions are one multi-asset
    confirm.wait_for()
    confirm.click()
    dialog = page.get_by_role("dialog").filter(has_text="Partition selection")
    dialog.get_by_text("Partition selection").wait_for()
    span = dialog.inner_text()
    assert "2008-01-02" in span and LAUNCH_SESSION in span, span
    _shot(page, ui, "materialize_dialog")
    dialog.get_by_role("button", name="Cancel").click()


def test_lineage_opens_with_every_group_expanded(page, ui):
    from trading_dagster.cli import LINEAGE_PATH, PORTAL_PATH

    _open(page, ui, LINEAGE_PATH, "Global asset lineage")
    # asset names show only inside an expanded group box: one of each group. Dagster renders only the nodes in
    # view and opens the graph on its start: the stages up to the marts first, then (dragged into view) the
    # trading book and the portal at the graph's lower right
    for name in ("raw_prices", "cleaned_prices", "signals", "executions", "equity", "fct_daily_pnl"):
        page.get_by_text(name, exact=True).first.wait_for()
    _shot(page, ui, "lineage_expanded")
    page.mouse.move(1400, 900)
    page.mouse.down()
    page.mouse.move(700, 350, steps=10)
    page.mouse.up()
    for name in ("kill_switch", "audit_log", "upcoming_orders", "strategy_equity", "tearsheet"):
        page.get_by_text(name, exact=True).first.wait_for()
    _shot(page, ui, "lineage_expanded_portal")
    _open(page, ui, PORTAL_PATH, "emergency_controls")  # the portal's link `ui` prints: its four pages
    for name in ("upcoming_orders", "strategy_equity", "strategy_config"):
        page.get_by_text(name, exact=True).first.wait_for()


def _rows_with(body: str, *cells: str) -> list[str]:
    return [line for line in body.splitlines() if all(f"\t{c}" in f"\t{line}" for c in cells)]


def test_portal_upcoming_orders(page, ui):
    _open(page, ui, "/assets/portal/upcoming_orders", "next_open")
    body = page.inner_text("body")
    assert _metadata(body, "session") == DEMO_LAST and _metadata(body, "next_open") == ORDERS_SESSION
    assert "symbol\tside\tqty\tprice\tstrategy\tstatus\treason" in body
    approved = [r for r in _rows_with(body, "buy") if "\tapproved" in r]
    denied = [r for r in body.splitlines() if "\tdenied: " in r]
    assert len(approved) == 1 and len(denied) == 4, body[:4000]
    assert "team:trading-desk" in body or "trading-desk" in body  # its owner
    _shot(page, ui, "portal_upcoming_orders")


def test_portal_strategy_equity_plot(page, ui):
    _open(page, ui, "/assets/portal/strategy_equity", "by_strategy")
    body = page.inner_text("body")
    for strategy in ("rsi_30_70", "total"):  # the only strategy that traded in the demo's 46 sessions, and all
        assert f"pnl_{strategy}" in body
        assert _rows_with(body, strategy), strategy  # its row of the table
    page.get_by_text("[Show Markdown]").first.click()
    page.get_by_role("img", name="Cumulative P&L per strategy").first.wait_for()
    page.wait_for_timeout(600)  # the dialog fades in
    _shot(page, ui, "portal_strategy_equity")


def test_portal_strategy_config(page, ui):
    _open(page, ui, "/assets/portal/strategy_config", "strategies")
    body = page.inner_text("body")
    assert "sma_20_50_cross\tsma_cross\tfast=20, slow=50\tauto\tdaily" in body
    for setting in ("monthly_share_limit\t4", "max_position_pct_equity\t10", "slippage_bps\t5", "order_type\tmarket"):
        assert setting in body, setting
    assert f"2008-01-02 .. {DEMO_LAST}" in _metadata(body, "partitions")  # as the demo's pages saw it
    _shot(page, ui, "portal_strategy_config")


def test_portal_emergency_controls_lead_to_the_square_off(page, ui):
    _open(page, ui, "/assets/portal/emergency_controls", "how_to")
    assert _metadata(page.inner_text("body"), "kill_switch_engaged") == "false"
    page.get_by_text("[Show Markdown]").first.click()
    page.get_by_text(re.compile("Kill switch now: released")).first.wait_for()
    page.get_by_role("link", name="flatten_job").first.wait_for()
    page.wait_for_timeout(600)  # the dialog fades in
    _shot(page, ui, "portal_emergency_controls")
    _open(page, ui, "/locations/trading_dagster/jobs/flatten_job", "flatten_job")
    page.get_by_text(re.compile("EMERGENCY SQUARE-OFF of the broker account")).first.wait_for()
    _shot(page, ui, "flatten_job")


def test_a_one_session_run_launched_from_the_launchpad_succeeds(page, ui):
    _open(page, ui, "/locations/trading_dagster/jobs/pipeline_job/playground", "Launch Run")
    partition = page.get_by_placeholder("Partition")
    partition.click()
    partition.fill(LAUNCH_SESSION)
    page.get_by_text(LAUNCH_SESSION, exact=True).last.click()
    page.wait_for_timeout(1500)  # the launchpad reloads the partition's config and tags
    _dismiss_newsletter(page)  # the page has been up for more than the dialog's one-second delay
    _shot(page, ui, "launchpad")
    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]+.*"))
    status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    status.wait_for(timeout=RUN_SECONDS * 1000)
    _shot(page, ui, "launched_run")
    assert status.inner_text() == "Success", ui["log"].read_text()[-3000:]


MART = ["marts", "fct_trade_journal"]


def _asset_exists(ui: dict, key: list[str]) -> bool:
    query = json.dumps({"query": f"{{ assetNodeOrError(assetKey: {{path: {json.dumps(key)}}}) {{ __typename }} }}"})
    req = urllib.request.Request(
        f"{ui['url']}/graphql", data=query.encode(), headers={"Content-Type": "application/json"}
    )
    return '"AssetNode"' in urllib.request.urlopen(req, timeout=10).read().decode()


def test_lineage_runs_from_raw_prices_to_the_dbt_marts(page, ui):
    if not _asset_exists(ui, MART):
        pytest.skip(f"no {'/'.join(MART)} asset in the code location (the dbt marts are not wired)")
    _open(page, ui, f"/assets/{'/'.join(MART)}?view=lineage&lineageScope=upstream&lineageDepth=20", "raw_prices")
    for stage in ("raw_prices", "cleaned_prices", "orders", "executions", MART[-1]):
        page.get_by_text(stage, exact=True).first.wait_for()
    _shot(page, ui, "lineage_marts")


def test_a_portal_run_launched_from_the_ui_sees_the_webservers_partitions(page, ui):
    """The run worker the webserver starts inherits its environment: its pages show the webserver's range."""
    _open(page, ui, "/locations/trading_dagster/jobs/portal_job/playground", "Launch Run")
    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]+.*"))
    status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    status.wait_for(timeout=RUN_SECONDS * 1000)
    assert status.inner_text() == "Success", ui["log"].read_text()[-3000:]
    _open(page, ui, "/assets/portal/strategy_config", "partitions")
    body = page.inner_text("body")
    assert f"2008-01-02 .. {LAUNCH_SESSION} (TRADING_DAGSTER_LAST_SESSION={LAUNCH_SESSION})" in body, body[:3000]
    _open(page, ui, "/assets/portal/upcoming_orders", "next_open")
    assert _metadata(page.inner_text("body"), "session") == LAUNCH_SESSION  # the run launched before
    _shot(page, ui, "portal_after_launch")
    print(f"browser test total {time.monotonic() - ui['t0']:.1f} s")
