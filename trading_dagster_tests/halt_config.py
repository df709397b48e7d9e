"""A settings file in which a session without bars halts (decision 0004 section 2): the shipped
`trading_dagster.toml` plus `[data] on_missing_session = "halt"`, for the tests of that path (the default,
"outage", reports such a session at WARN severity and goes on)."""

from pathlib import Path

from trading_dagster.settings import DEFAULT_CONFIG_FILE


def halt_config(folder: Path) -> str:
    """The path of a config file with on_missing_session = "halt", written into `folder`."""
    path = Path(folder) / "halt_on_missing_session.toml"
    path.write_text(DEFAULT_CONFIG_FILE.read_text() + '\n[data]\non_missing_session = "halt"\n')
    return str(path)
