"""``bulk-ingest``: run the service, manage the local stack, create tenants."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence

from bulk_ingest.runtime import tune_garbage_collector
from bulk_ingest.settings import Settings, SettingsError, load_settings


def _stack(settings: Settings, action: str, with_registry: bool) -> int:
    from bulk_ingest.processes import stack_config
    from stack import registry_url, stack_down, stack_status, stack_up

    config = stack_config(settings)
    if action == "up":
        stack_up(config, with_registry=with_registry)
        prepare_backends(settings)
        if with_registry:
            print(f"schema registry: BULK_INGEST_SCHEMA_REGISTRY_URL={registry_url(config)}")
    elif action == "down":
        stack_down(config)
    else:
        status = stack_status(config)
        services = (
            *status.kafka_nodes,
            status.postgres,
            *([status.registry] if status.registry else []),
        )
        for service in services:
            state = "running" if service.running else "stopped"
            where = f"{service.address:22} pid={service.pid}"
            print(f"{service.name:9} {state:8} {where} {service.detail}")
    return 0


def prepare_backends(settings: Settings) -> None:
    """Migrations and topics: idempotent, run by ``up`` and by the test fixtures."""
    from bulk_ingest.kafka import ensure_topics, seed_committed_offsets
    from storage.db import migrate

    migrate(settings.sqlalchemy_url)
    ensure_topics(
        settings.kafka_bootstrap, settings.topics, settings.partitions, settings.replication
    )
    topics = settings.topics
    sources = (topics.requests, topics.records, topics.progress, topics.imports)
    seed_committed_offsets(settings.kafka_bootstrap, settings.app_id, sources)


def _tenants_create(settings: Settings, name: str) -> int:
    from domain.entities import DEFAULT_REFERENCE_TYPES
    from storage.db import create_tenant, sync_engine

    engine = sync_engine(settings.sqlalchemy_url)
    try:
        tenant = create_tenant(engine, name, DEFAULT_REFERENCE_TYPES)
    finally:
        engine.dispose()
    print(json.dumps(tenant.to_public_dict()))
    return 0


def _up(settings: Settings, workers: int, with_registry: bool) -> int:
    """Everything, in the foreground: stack, migrations, topics, gateway, workers, consumers
    (and the schema registry, which the processes then use, with ``with_registry``)."""
    from bulk_ingest.processes import Supervisor, spawn, stack_config
    from stack import registry_url, stack_up

    settings = settings.with_overrides(webhook_allow_loopback=True)
    stack_up(stack_config(settings), with_registry=with_registry)
    if with_registry and not settings.schema_registry_url:
        settings = settings.with_overrides(schema_registry_url=registry_url(stack_config(settings)))
    prepare_backends(settings)
    print(
        "webhooks: loopback targets are ALLOWED in this local stack "
        "(BULK_INGEST_WEBHOOK_ALLOW_LOOPBACK=true); private and link-local stay refused"
    )
    log_dir = settings.state_dir / "logs"
    gateway = spawn("gateway", settings, log_dir)
    supervisor = Supervisor(settings, log_dir, restart_all=True)
    for i in range(workers):
        supervisor.start("worker", f"worker-{i + 1}")
    supervisor.start("consumers", "consumers")
    for child in (gateway, *supervisor.processes):
        print(f"started {child.role:10} pid {child.pid:<7} log {child.log_path}")
    print(f"gateway: http://{settings.http_host}:{settings.http_port}  (Ctrl-C stops everything)")
    print("create a tenant: .venv/bin/bulk-ingest tenants create acme")
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            if not gateway.alive():
                print(f"gateway exited ({gateway.process.returncode}); last lines:")
                print(gateway.log_tail(20))
                break
            supervisor.check()  # a crashed worker's uncommitted work is redelivered
            time.sleep(0.5)
    finally:
        print(
            "stopping gateway, workers and consumers (the stack keeps running; "
            "`bulk-ingest stack down` stops Kafka and PostgreSQL)"
        )
        gateway.stop()
        supervisor.stop_all()
    return 0


def _consumers(settings: Settings) -> int:
    from consumers.app import run_consumers

    tune_garbage_collector()
    run_consumers(settings)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulk-ingest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start everything locally, in the foreground")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--registry", action="store_true", help="with a local schema registry")
    _add_brokers_argument(up)
    stack = commands.add_parser("stack", help="the local Kafka + PostgreSQL")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--registry", action="store_true", help="up: the schema registry too")
    _add_brokers_argument(stack)
    db = commands.add_parser("db", help="database administration")
    db.add_argument("action", choices=["migrate"])
    tenants = commands.add_parser("tenants", help="tenant administration")
    tenants_actions = tenants.add_subparsers(dest="action", required=True)
    create = tenants_actions.add_parser("create", help="create a tenant, print its keys as JSON")
    create.add_argument("name")
    commands.add_parser("topics", help="create the topics (idempotent)")
    commands.add_parser(
        "prepare", help="migrations, topics and consumer offsets: what `up` runs before workers"
    )
    commands.add_parser("gateway", help="run the HTTP gateway")
    commands.add_parser("worker", help="run a stream worker (validate, persist, aggregate)")
    commands.add_parser("consumers", help="run the webhook dispatcher and report writer")
    from bulk_ingest.import_client import add_arguments as add_import_arguments

    add_import_arguments(
        commands.add_parser("import", help="upload a file and import it, with live progress")
    )
    from bulk_ingest.job_client import add_arguments as add_jobs_arguments

    add_jobs_arguments(commands.add_parser("jobs", help="list, show, watch or cancel jobs"))
    from bulk_ingest.template_client import add_arguments as add_template_arguments

    add_template_arguments(
        commands.add_parser("template", help="save an entity's import template (CSV or XLSX)")
    )
    return parser


def _add_brokers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--brokers",
        type=_broker_count,
        default=None,
        help="Kafka brokers to run (default BULK_INGEST_KAFKA_BROKERS, 1); 3 is a replicated "
        "cluster of combined broker+controller nodes, replication factor 3, min.insync.replicas 2",
    )


def _broker_count(raw: str) -> int:
    try:
        count = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {count}")
    return count


def with_local_brokers(settings: Settings, brokers: int) -> Settings:
    """The settings of a local stack of ``brokers`` brokers: the count, and the bootstrap list of
    every node (they take consecutive port pairs from the first server's)."""
    from bulk_ingest.processes import stack_config

    if brokers < 1:
        raise ValueError(f"a stack needs at least one broker, not {brokers}")
    resized = settings.with_overrides(kafka_brokers=brokers)
    return resized.with_overrides(kafka_bootstrap=stack_config(resized).kafka_bootstrap)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "import":  # a client of a (possibly remote) gateway: no local settings
        from bulk_ingest.import_client import run_import

        return run_import(args)
    if args.command == "jobs":
        from bulk_ingest.job_client import run_jobs

        return run_jobs(args)
    if args.command == "template":
        from bulk_ingest.template_client import run_template

        return run_template(args)
    try:
        settings = load_settings()
    except SettingsError as error:  # bad input from the environment: one line, not a traceback
        print(f"bulk-ingest: {error}", file=sys.stderr)
        return 2
    if getattr(args, "brokers", None) is not None:
        settings = with_local_brokers(settings, args.brokers)
    if args.command == "up":
        return _up(settings, args.workers, args.registry)
    if args.command == "stack":
        return _stack(settings, args.action, args.registry)
    if args.command == "db":
        from storage.db import migrate

        migrate(settings.sqlalchemy_url)
        return 0
    if args.command == "prepare":
        prepare_backends(settings)
        return 0
    if args.command == "topics":
        from bulk_ingest.kafka import ensure_topics

        ensure_topics(
            settings.kafka_bootstrap, settings.topics, settings.partitions, settings.replication
        )
        return 0
    if args.command == "tenants":
        return _tenants_create(settings, args.name)
    if args.command == "gateway":
        from api.app import run_gateway

        tune_garbage_collector()
        run_gateway(settings)
        return 0
    if args.command == "worker":
        sys.argv = [sys.argv[0], "worker"]
        from streams.app import run_worker

        tune_garbage_collector()
        run_worker(settings)
        return 0
    if args.command == "consumers":
        return _consumers(settings)
    return 2


if __name__ == "__main__":
    sys.exit(main())
