"""Command line: ``python -m poise_devstack <command>``.

Commands:
    kafka-jars   fetch the Kafka broker jars once (Maven) and print the folder that holds them.
    up           start Kafka, PostgreSQL and the five Poise services locally, and leave them running.
    down         stop what `up` started.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _kafka_jars(args: argparse.Namespace) -> int:
    from poise_devstack.kafka import ensure_kafka_jars

    # Only the path goes to stdout, so `$(python -m poise_devstack kafka-jars)` works in scripts.
    print(ensure_kafka_jars(args.cache_dir))
    return 0


def _up(args: argparse.Namespace) -> int:
    from poise_devstack.local_stack import up

    state = up()
    print("Poise is up (distributed: Kafka, PostgreSQL, five services).")
    for name, url in state["urls"].items():
        print(f"  {name:<8} {url}   (health {url}/healthz, metrics {url}/metrics)")
    print(f"  bus      {state['bus_url']}")
    print(f"  database {state['database_url']}")
    print(f"  logs     {state['logs']}")
    print(f"  API key  {state['key']}  (tenant local; shown once: keep it)")
    print("Stop it with `make down`.")
    return 0


def _down(args: argparse.Namespace) -> int:
    from poise_devstack.local_stack import down

    stopped = down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; the lead adds more subcommands here."""
    parser = argparse.ArgumentParser(
        prog="python -m poise_devstack",
        description="Real Kafka and PostgreSQL on 127.0.0.1 for Poise tests and `make up`.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    jars = commands.add_parser("kafka-jars", help="fetch the Kafka broker jars (once) and print their folder")
    jars.add_argument("--cache-dir", type=Path, default=None,
                      help="where to keep the jars (default: <repo>/.cache/kafka)")
    jars.set_defaults(handler=_kafka_jars)
    commands.add_parser("up", help="start the distributed stack locally and leave it running").set_defaults(handler=_up)
    commands.add_parser("down", help="stop what `up` started").set_defaults(handler=_down)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except RuntimeError as exc:
        print(f"poise-devstack: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
