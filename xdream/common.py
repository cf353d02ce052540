"""Pieces the subcommands share: ``--set`` parsing, client connection options, CPU manners."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from protocol.errors import ConfigError

if TYPE_CHECKING:
    from protocol.messages import Role
    from rig_clients.connection import Connection


def share_cpus_politely() -> None:
    """Let idle OpenMP threads sleep instead of spinning (before torch is imported).

    The server and a simulator often share one machine; spinning threads of the process
    that just finished steal the cores from the one that works next (the loop benchmark
    measured the in-silico loop 20-30 % slower that way). ``OMP_WAIT_POLICY`` set by the
    user wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``["population=40", "step_size=decay"]`` -> typed dict (JSON literals where they parse)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def client_connection(args: argparse.Namespace, roles: list[Role]) -> Connection:
    """The (not yet registered) connection a rig command's options describe: server, name,
    CURVE keys, and how long to keep trying when the server is away."""
    from rig_clients.connection import Connection

    return Connection(
        args.server,
        roles,
        args.name,
        configure=client_security(args),
        give_up_s=args.give_up_after,
    )


def client_security(args: argparse.Namespace):
    """A socket configurator for CURVE, when both key options are given."""
    if not (args.server_key or args.client_key):
        return None
    if not (args.server_key and args.client_key):
        raise ConfigError("CURVE needs both --server-key and --client-key")
    from protocol.security import configure_client

    return lambda sock: configure_client(sock, args.server_key, args.client_key)


def add_client_options(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--server", default="tcp://127.0.0.1:5555", help="server's ZeroMQ endpoint")
    p.add_argument("--name", default=name, help="name shown to the operator (a session's rig)")
    p.add_argument("--server-key", help="server's CURVE public key file (beyond loopback)")
    p.add_argument("--client-key", help="this client's CURVE secret key file")
    p.add_argument(
        "--give-up-after",
        type=float,
        metavar="SECONDS",
        help="stop when the server cannot be reached for this long (default: keep trying, "
        "1 to 32 s apart, until stopped)",
    )
