"""The ``xdream`` command: one entry point, one subcommand per job.

Each subcommand imports what it runs only when chosen (``xdream.*_commands``), so
rig-PC commands never import torch.
Every deliberate error (``XDreamError``) becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from protocol.errors import XDreamError
from xdream import rig_commands, server_commands, simulator_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xdream", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        simulator_commands.add_evolve,
        simulator_commands.add_sweep,
        server_commands.add_serve,
        server_commands.add_demo,
        simulator_commands.add_simulate,
        rig_commands.add_present,
        rig_commands.add_record,
        rig_commands.add_keys,
        server_commands.add_token,
        server_commands.add_health,
        server_commands.add_export,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except XDreamError as exc:
        print(f"xdream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xdream {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
