"""The `router` command line: `router check FILE`, and the engine's apps as `router net APP`."""

from __future__ import annotations

import sys

import click

from router.config import ConfigError, load_config
from router.net.__main__ import APPS
from router.net.__main__ import main as run_app


@click.group()
@click.version_option(package_name="dicom-router")
def main() -> None:
    """dicom-router: receive DICOM instances and route them by rules."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.argument("app", type=click.Choice(APPS))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def net(app: str, args: tuple[str, ...]) -> None:
    """Run an engine app, e.g. `router net echoscu 127.0.0.1 11112`."""
    sys.exit(run_app([app, *args]))


@main.command()
@click.argument("config_file", type=click.Path(dir_okay=False))
def check(config_file: str) -> None:
    """Check a config file: print every problem with its line, exit 1 if there is any."""
    try:
        config = load_config(config_file)
    except ConfigError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{config_file}: {len(error.problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"{config_file}: OK ({len(config.destinations)} destination(s), {len(config.rules)} rule(s))")
