"""The `router` command line: the engine's apps now, `router run rules.yml` when the runtime lands."""

from __future__ import annotations

import sys

import click

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
