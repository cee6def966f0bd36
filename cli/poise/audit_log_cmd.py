"""`poise audit-log`: export, verify and prune the hash-chained audit log."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

# One way to open the database for every command: migrated, disposed afterwards.
from poise.calibrate_cmd import DbOption, _database

audit_log_app = typer.Typer(
    no_args_is_help=True,
    help="The audit log: every access to candidate data and every score, override and erasure, hash-chained.",
)


def operator() -> str:
    """The actor of a command's entries: ``cli:<the operating system user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (e.g. a container's arbitrary user)
        return f"cli:uid-{os.getuid()}"


@audit_log_app.command("export")
def export(
    tenant: Annotated[Optional[str], typer.Option("--tenant", help="Only this tenant's entries.")] = None,
    since: Annotated[Optional[str], typer.Option(
        "--since", help="Entries at or after this: ISO-8601 date or date-time, or Unix seconds.")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Entries before this (as --since).")] = None,
    action: Annotated[Optional[str], typer.Option("--action", help="Only this action, e.g. scorecard.read.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (one JSON object per line) or csv.")] = "jsonl",
    out: Annotated[Optional[Path], typer.Option("--out", help="Write here instead of standard output.")] = None,
    db: DbOption = None,
) -> None:
    """Write the entries, oldest first, with their hashes."""
    from poise.cli import fail
    from poise_common.audit_trail import ACTIONS, csv_lines, entries, jsonl_lines, parse_time

    if fmt not in ("jsonl", "csv"):
        fail(f"--format must be jsonl or csv, not {fmt!r}")
    if action is not None and action not in ACTIONS:
        fail(f"unknown action {action!r}; known: {', '.join(sorted(ACTIONS))}")
    try:
        start, end = (parse_time(v) if v else None for v in (since, until))
    except ValueError as exc:
        fail(str(exc))
    with _database(db) as (_, sessions):
        records = entries(sessions, tenant=tenant, since=start, until=end, action=action)
        lines = jsonl_lines(records) if fmt == "jsonl" else csv_lines(records)
        if out is None:
            sys.stdout.writelines(lines)
            return
        written = 0
        try:
            with out.open("w", encoding="utf-8", newline="") as sink:
                for line in lines:
                    sink.write(line)
                    written += 1
        except OSError as exc:
            fail(f"cannot write {out}: {exc.strerror or exc}")
    header = 1 if fmt == "csv" else 0
    print(f"{written - header} entries written to {out}", file=sys.stderr)


@audit_log_app.command("verify")
def verify(db: DbOption = None) -> None:
    """Walk the whole chain; exit 1 naming the first entry that was changed, removed or reordered."""
    from poise.cli import fail
    from poise_common.audit_trail import verify as verify_chain

    with _database(db) as (_, sessions):
        result = verify_chain(sessions)
    if not result.ok:
        fail(f"the audit log is broken at entry {result.first_bad_seq}: {result.problem} "
             f"({result.entries} entries before it verified)", code=1)
    if result.head_seq is None:
        print("ok: the audit log is empty")
    else:
        print(f"ok: {result.entries} entries verified; newest entry {result.head_seq} has hash {result.head_hash}")


@audit_log_app.command("prune")
def prune(
    keep_days: Annotated[
        Optional[float],
        typer.Option("--keep-days", help="Keep entries this many days (at least 183); default: "
                     "POISE_AUDIT_LOG_RETENTION_DAYS (400)."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Remove entries older than the kept period from the start of the chain, leaving a checkpoint entry."""
    from poise.cli import fail
    from poise_common.audit_trail import prune as prune_chain

    with _database(db) as (settings, sessions):
        days = settings.audit_log_retention_days if keep_days is None else keep_days
        try:
            result = prune_chain(sessions, keep_days=days, actor=operator())
        except ValueError as exc:
            fail(str(exc))
    if result.pruned == 0:
        print(f"nothing to prune: no entry is older than {days:g} days")
    else:
        print(f"pruned {result.pruned} entries (through entry {result.through_seq}); "
              f"checkpoint entry {result.checkpoint_seq}")
