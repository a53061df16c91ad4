"""The `router` command line: `run`, `check`, `test`, `status`, `queue`, and the engine's apps as `router net APP`.

Each command turns a bad config into its list of problems (file:line:column)
and a non-zero exit code; none prints a traceback for a user's mistake.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from router.config import Config, ConfigError, load_config
from router.logs import setup_logging
from router.spool import Spool
from workers.queue import Queue, QueueUnwritable
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


def _load(config_file: str) -> Config:
    """The config, or every problem on stderr and exit 1."""
    try:
        return load_config(config_file)
    except ConfigError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{config_file}: {len(error.problems)} problem(s)", err=True)
        sys.exit(1)


CONFIG_OPTION = click.option(
    "-c", "--config", "config_file", default="rules.yml", show_default=True, type=click.Path(dir_okay=False),
    help="The router's config file.",
)


@main.command()
@click.argument("config_file", type=click.Path(dir_okay=False))
def check(config_file: str) -> None:
    """Check a config file: print every problem with its line, exit 1 if there is any."""
    config = _load(config_file)
    click.echo(f"{config_file}: OK ({len(config.destinations)} destination(s), {len(config.rules)} rule(s))")


@main.command("test")
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--calling-ae", default="", help="Calling AE title (default: the file's Source Application Entity Title).")
@click.option("--called-ae", default=None, help="Called AE title (default: the router's ae_title).")
@click.option("--peer-ip", default="", help="The address the instances come from.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list, one object per file).")
def test_rules(config_file: str, paths: tuple[Path, ...], calling_ae: str, called_ae: str | None, peer_ip: str,
               as_json: bool) -> None:
    """Dry run: what the rules of CONFIG_FILE do with each instance under PATHS, sending nothing."""
    from rules.evaluate import RuleSet
    from rules.explain import Association, as_text, dry_run, instance_files
    from rules.explain import as_json as json_of

    config = _load(config_file)
    rules = RuleSet.compile(config.rules)
    association = Association(calling_ae, called_ae if called_ae is not None else config.router.ae_title, peer_ip)
    runs = [dry_run(rules, path, association) for path in instance_files(paths)]
    if as_json:
        click.echo(json.dumps([json_of(run) for run in runs], indent=2))
    else:
        click.echo("\n\n".join(as_text(run) for run in runs))
    sys.exit(1 if any(run.error for run in runs) else 0)


@main.command()
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.option("--log-json", is_flag=True, help="Log JSON lines instead of plain text.")
def run(config_file: str, log_json: bool) -> None:
    """Run the router described by CONFIG_FILE until SIGTERM or Ctrl-C."""
    from router.supervisor import Supervisor

    _load(config_file)
    setup_logging(log_json, "supervisor")
    sys.exit(Supervisor(Path(config_file), log_json).run())


@main.command()
@CONFIG_OPTION
def status(config_file: str) -> None:
    """Show the router's processes and, per destination, its delivery queue."""
    from router.supervisor import read_status, supervisor_running

    spool = Spool(_load(config_file).router.spool)
    running = supervisor_running(spool)
    click.echo(f"router: {'running' if running else 'not running'} (spool {spool.root})")
    for process in (read_status(spool) or {}).get("processes", []):
        alive = "alive" if running and process["alive"] else "down"
        click.echo(f"  {process['name']:<12} pid {process['pid']:<8} {alive:<6} restarts {process['restarts']}")
    if not spool.queue_path.exists():
        click.echo("no delivery queue yet: the router has not run on this spool")
        return
    with _queue(spool) as jobs:
        counts = jobs.counts(time.time())
    click.echo(f"{'destination':<16} {'queued':>8} {'in flight':>10} {'delivered':>10} {'failed':>8}  oldest queued")
    for entry in counts:
        age = "-" if entry.oldest_queued_age is None else f"{entry.oldest_queued_age:.0f} s"
        click.echo(f"{entry.label:<16} {entry.queued:>8} {entry.in_flight:>10} {entry.delivered:>10} {entry.dead:>8}  {age}")


@main.group()
def queue() -> None:
    """List, retry and purge delivery jobs."""


@queue.command("list")
@CONFIG_OPTION
@click.option("--failed", is_flag=True, help="Only the failed (dead-letter) jobs.")
@click.option("--limit", type=int, default=None, help="At most this many jobs.")
def queue_list(config_file: str, failed: bool, limit: int | None) -> None:
    """List the jobs: queued, in flight and failed."""
    with _queue(Spool(_load(config_file).router.spool)) as jobs:
        listed = jobs.list_jobs(failed_only=failed, limit=limit)
    for job in listed:
        error = f"  {job.last_error}" if job.last_error else ""
        click.echo(f"{job.id:>8} {job.state.value:<9} {job.lane.label:<16} attempts {job.attempts:<3} {job.sop_instance_uid}{error}")
    click.echo(f"{len(listed)} job(s)")


@queue.command("retry")
@CONFIG_OPTION
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every failed job.")
def queue_retry(config_file: str, ids: tuple[int, ...], every: bool) -> None:
    """Queue failed jobs again, their attempts counted afresh."""
    with _queue(Spool(_load(config_file).router.spool)) as jobs:
        count = jobs.retry(_chosen(ids, every), time.time())
    _report(count, ids, "queued again", "failed job")


@queue.command("purge")
@CONFIG_OPTION
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every failed job.")
def queue_purge(config_file: str, ids: tuple[int, ...], every: bool) -> None:
    """Delete jobs for good (their spool files go when no job needs them)."""
    with _queue(Spool(_load(config_file).router.spool)) as jobs:
        count = jobs.purge(_chosen(ids, every))
    _report(count, ids, "purged", "job")


def _report(count: int, ids: tuple[int, ...], done: str, kind: str) -> None:
    """Say how many jobs were `done`; exit 1 if some of the `ids` given named no such `kind`."""
    click.echo(f"{count} job(s) {done}")
    missed = len(set(ids)) - count
    if ids and missed > 0:
        raise click.ClickException(f"{missed} of the IDs given name no {kind} (see `router queue list`)")


def _chosen(ids: tuple[int, ...], every: bool) -> list[int] | None:
    if bool(ids) == every:
        raise click.UsageError("give job IDs or --all, not both and not neither")
    return None if every else list(ids)


@contextmanager
def _queue(spool: Spool) -> Iterator[Queue]:
    """The spool's delivery queue; a clear error if the router never ran on this spool."""
    if not spool.queue_path.exists():
        raise click.ClickException(f"no delivery queue at {spool.queue_path}: the router has not run on this spool yet")
    try:
        jobs = Queue(spool)
        try:
            yield jobs
        finally:
            jobs.close()
    except QueueUnwritable as error:  # a full disk, say: the queue cannot even be opened for reading
        raise click.ClickException(str(error)) from None
