"""compose.yaml, checked without Docker, in both of its modes.

Single mode is ``docker compose up``; cluster mode is ``docker compose --profile cluster
--env-file compose.cluster.env up``. For each, the file is read as Compose reads it — YAML with
its merge keys, then ``${VAR:-default}`` interpolated from that mode's variables — and checked
against the Compose Specification's JSON schema (vendored from compose-go, provenance in
docs/decisions.md), against :func:`bulk_ingest.replication.replication_for`, and against the
CLI's own parser for every ``bulk-ingest`` command a service runs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bulk_ingest.cli import build_parser
from bulk_ingest.replication import replication_for
from bulk_ingest.settings import PREFIX, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
CLUSTER_ENV_FILE = ROOT / "compose.cluster.env"
SCHEMA_FILE = Path(__file__).parent / "data" / "compose-spec.json"
SCHEMA_SHA256 = "f266dcbb043229405d7cedd5aec918f9102c2b3d5e3850808fdd8edd564a43ff"
"""compose-go v2.16.2, ``schema/compose-spec.json`` (docs/decisions.md, 2026-12-03)."""

KAFKA_IMAGE = "apache/kafka:"
FACTOR_KEYS = (
    "KAFKA_DEFAULT_REPLICATION_FACTOR",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
)
MIN_INSYNC_KEYS = (
    "KAFKA_MIN_INSYNC_REPLICAS",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
)
CLI_SERVICES = {"migrate", "gateway", "worker", "consumers"}
"""The services that run ``bulk-ingest …``: the test fails if it finds fewer."""


# --- reading the file as Compose does ----------------------------------------------------------

_REFERENCE = re.compile(r"\$(\$|\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)?")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", re.DOTALL)


class InterpolationError(ValueError):
    """A reference Compose would refuse, or one this file must not make (unset, no default)."""


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """``$$``, ``$VAR``, ``${VAR}`` and ``${VAR<op>arg}`` with the Compose Specification's
    operators (``:-`` ``-`` ``:?`` ``?`` ``:+`` ``+``). Stricter than Compose in one way: a
    variable without a default that is unset is an error, not an empty string with a warning."""
    return _REFERENCE.sub(lambda found: _substitute(found, env), text)


def _substitute(found: re.Match[str], env: Mapping[str, str]) -> str:
    reference = found.group(1)
    if reference is None:
        raise InterpolationError(f"a lone '$' in {found.string!r} (write '$$' for a dollar)")
    if reference == "$":
        return "$"
    if not reference.startswith("{"):
        return _value(reference, env)
    parsed = _BRACED.fullmatch(reference[1:-1])
    if parsed is None or "$" in (parsed.group(3) or ""):
        raise InterpolationError(f"{found.group(0)!r} is not an interpolation this test reads")
    name, operator, argument = parsed.groups()
    if operator is None:
        return _value(name, env)
    is_set = name in env and (not operator.startswith(":") or env[name] != "")
    if operator.endswith("-"):
        return env[name] if is_set else argument
    if operator.endswith("+"):
        return argument if is_set else ""
    if not is_set:
        raise InterpolationError(f"{name} is required: {argument}")
    return env[name]


def _value(name: str, env: Mapping[str, str]) -> str:
    if name not in env:
        raise InterpolationError(f"${{{name}}} is unset and has no default")
    return env[name]


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Every string value of the parsed file interpolated (keys are not, as in Compose)."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if isinstance(node, str):
        return interpolate_text(node, env)
    return node


def referenced_variables(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from referenced_variables(value)
    elif isinstance(node, list):
        for value in node:
            yield from referenced_variables(value)
    elif isinstance(node, str):
        for found in _REFERENCE.finditer(node):
            reference = found.group(1) or "$"
            if reference != "$":
                braced = _BRACED.match(reference.strip("{}"))
                assert braced is not None, found.group(0)
                yield braced.group(1)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines, ``#`` comments and blank lines: the part of Compose's env-file
    format compose.cluster.env uses (quotes would mean something there, so they are refused)."""
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or value[:1] in "\"'":
            raise ValueError(f"{path.name}:{number}: not a plain KEY=VALUE line: {line!r}")
        env[key] = value
    return env


def raw_file() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@dataclass(frozen=True, eq=False)  # hashed by identity: each mode's model is read once
class Mode:
    name: str
    brokers: int
    profiles: frozenset[str]
    env: Mapping[str, str] = field(default_factory=dict)

    def model(self) -> dict[str, Any]:
        return _model(self)

    def services(self) -> dict[str, dict[str, Any]]:
        """The services this mode starts: those without a profile, and those of its profiles."""
        return {
            name: service
            for name, service in self.model()["services"].items()
            if not service.get("profiles") or self.profiles & set(service["profiles"])
        }

    def kafka_nodes(self) -> dict[str, dict[str, Any]]:
        return {
            name: service
            for name, service in self.services().items()
            if str(service.get("image", "")).startswith(KAFKA_IMAGE)
        }


@cache
def _model(mode: Mode) -> dict[str, Any]:
    model: dict[str, Any] = interpolate(raw_file(), mode.env)
    return model


SINGLE = Mode("single", brokers=1, profiles=frozenset())
CLUSTER = Mode(
    "cluster", brokers=3, profiles=frozenset({"cluster"}), env=read_env_file(CLUSTER_ENV_FILE)
)
MODES = pytest.mark.parametrize("mode", [SINGLE, CLUSTER], ids=lambda mode: mode.name)


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def depends_on(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each dependency with ``required`` filled in (its default is true)."""
    dependencies = service.get("depends_on") or {}
    if isinstance(dependencies, list):
        dependencies = {name: {"condition": "service_started"} for name in dependencies}
    return {name: {"required": True, **config} for name, config in dependencies.items()}


def listener_address(listeners: str, name: str) -> tuple[str, int]:
    """The (host, port) of listener ``name`` in a ``NAME://host:port,…`` list."""
    for listener in listeners.split(","):
        scheme, _, address = listener.partition("://")
        if scheme == name:
            host, _, port = address.rpartition(":")
            return host, int(port)
    raise AssertionError(f"no {name} listener in {listeners!r}")


def plaintext_address(node_env: Mapping[str, str]) -> tuple[str, int]:
    """Where a node tells the other containers to reach it: what the bootstrap list names."""
    return listener_address(node_env["KAFKA_ADVERTISED_LISTENERS"], "PLAINTEXT")


# --- the checks --------------------------------------------------------------------------------


def test_the_vendored_schema_is_the_one_recorded() -> None:
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert SCHEMA_SHA256 in (ROOT / "docs" / "decisions.md").read_text()


@MODES
def test_the_file_is_valid_compose(mode: Mode) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(mode.model())
    ]
    assert errors == []


@MODES
def test_the_kafka_nodes_form_one_quorum(mode: Mode) -> None:
    nodes = {name: environment(service) for name, service in mode.kafka_nodes().items()}
    assert len(nodes) == mode.brokers
    ids = {name: int(env["KAFKA_NODE_ID"]) for name, env in nodes.items()}
    assert sorted(ids.values()) == list(range(1, mode.brokers + 1))
    voters = ",".join(
        f"{ids[name]}@{name}:{listener_address(env['KAFKA_LISTENERS'], 'CONTROLLER')[1]}"
        for name, env in sorted(nodes.items(), key=lambda item: ids[item[0]])
    )
    for name, env in nodes.items():
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters, name
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert plaintext_address(env)[0] == name
    assert len({env["CLUSTER_ID"] for env in nodes.values()}) == 1
    services = mode.kafka_nodes().values()
    data = [volume for service in services for volume in service["volumes"]]
    ports = [port for service in services for port in service["ports"]]
    assert len(set(data)) == len(data) == mode.brokers
    assert len(set(ports)) == len(ports) == mode.brokers


def test_single_mode_keeps_one_voter() -> None:
    (env,) = (environment(service) for service in SINGLE.kafka_nodes().values())
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"


def test_cluster_mode_has_the_three_voters() -> None:
    for service in CLUSTER.kafka_nodes().values():
        assert environment(service)["KAFKA_CONTROLLER_QUORUM_VOTERS"] == (
            "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
        )


@MODES
def test_replication_follows_the_broker_count(mode: Mode) -> None:
    rule = replication_for(mode.brokers)
    for name, service in mode.kafka_nodes().items():
        env = environment(service)
        assert {key: int(env[key]) for key in FACTOR_KEYS} == dict.fromkeys(
            FACTOR_KEYS, rule.factor
        ), name
        assert {key: int(env[key]) for key in MIN_INSYNC_KEYS} == dict.fromkeys(
            MIN_INSYNC_KEYS, rule.min_insync
        ), name
        # A replication setting added later without this rule is caught here.
        replication_keys = {
            key for key in env if "REPLICATION_FACTOR" in key or re.search("MIN_(ISR|INSYNC)", key)
        }
        assert replication_keys == {*FACTOR_KEYS, *MIN_INSYNC_KEYS}, name


@MODES
def test_the_application_knows_every_broker(mode: Mode) -> None:
    nodes = mode.kafka_nodes()
    advertised = {
        ":".join(map(str, plaintext_address(environment(node)))) for node in nodes.values()
    }
    applications = {name: service for name, service in mode.services().items() if name not in nodes}
    for name, service in applications.items():
        env = environment(service)
        if not any(key.startswith(PREFIX) for key in env):
            continue  # postgres
        settings = load_settings({k: v for k, v in env.items() if k.startswith(PREFIX)})
        assert settings.kafka_brokers == mode.brokers, name
        assert settings.replication == replication_for(mode.brokers), name
        assert sorted(settings.bootstrap_servers) == sorted(advertised), name


@MODES
def test_every_dependency_is_started_or_optional(mode: Mode) -> None:
    defined, started = mode.model()["services"], mode.services()
    for name, service in started.items():
        for dependency, config in depends_on(service).items():
            assert dependency in defined, f"{name} depends on undefined {dependency}"
            if dependency not in started:
                assert config["required"] is False, f"{name} needs {dependency}, not in {mode.name}"


def test_in_a_cluster_what_waits_for_kafka_waits_for_every_node() -> None:
    nodes = set(CLUSTER.kafka_nodes())
    waiting = {
        name: set(depends_on(service))
        for name, service in CLUSTER.services().items()
        if "kafka" in depends_on(service)
    }
    assert set(waiting) >= CLI_SERVICES
    missing = {name: sorted(nodes - needs) for name, needs in waiting.items()}
    assert missing == {name: [] for name in waiting}


def test_every_bulk_ingest_command_parses() -> None:
    commands: dict[str, list[str]] = {}
    for name, service in raw_file()["services"].items():
        command = service.get("command") or []
        words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
        if words[:1] == ["bulk-ingest"]:
            commands[name] = words
    assert set(commands) >= CLI_SERVICES
    for name, words in commands.items():
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as exit_:
            pytest.fail(f"{name}: {shlex.join(words)!r} does not parse (exit {exit_.code})")


def test_the_cluster_env_file_sets_exactly_what_the_file_reads() -> None:
    assert set(CLUSTER.env) == set(referenced_variables(raw_file()))


def test_interpolation_follows_the_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    cases = {
        "${SET:-d}": "x",
        "${EMPTY:-d}": "d",
        "${EMPTY-d}": "",
        "${UNSET-d}": "d",
        "${UNSET:-1@kafka:9093}": "1@kafka:9093",
        "${SET:+alt}": "alt",
        "${EMPTY:+alt}": "",
        "$$SET and $SET/${SET}": "$SET and x/x",
    }
    assert {text: interpolate_text(text, env) for text in cases} == cases
    for refused in ("${UNSET}", "$UNSET", "${EMPTY:?needed}", "a lone $ here", "${A:-${SET}}"):
        with pytest.raises(InterpolationError):
            interpolate_text(refused, env)
