"""``xdream present``, ``record`` and ``keys``: what runs on rig PCs, with the base install
(no torch, no server packages)."""

from __future__ import annotations

import argparse

from protocol.errors import ConfigError
from xdream.common import add_client_options, client_connection


def _record(args: argparse.Namespace) -> int:
    from protocol.messages import Role
    from rig_clients import record

    return record.main(args.file, client_connection(args, [Role.recorder]))


def add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="send spike counts from a CSV file or stdin",
        description="Send spike counts, one CSV row per presentation: session, generation, "
        "presentation_id, stimulus_id, then one column per channel.",
    )
    add_client_options(p, "recorder")
    p.add_argument("file", nargs="?", default="-", help="CSV file (default: stdin, row by row)")
    p.set_defaults(handler=_record)


def _present(args: argparse.Namespace) -> int:
    from rig_clients import folder

    if args.folder is None:
        raise ConfigError("give --folder DIR (the window front end is not available yet)")
    from protocol.messages import Role

    return folder.main(args.folder, client_connection(args, [Role.presenter, Role.recorder]))


def add_present(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "present",
        help="present generations through a folder (MonkeyLogic style)",
        description="Write each block's images to a folder and send back the responses "
        "the rig writes there (block files as in the reference XDream).",
    )
    add_client_options(p, "presenter")
    p.add_argument("--folder", help="exchange folder shared with the stimulus computer")
    p.set_defaults(handler=_present)


def _keys(args: argparse.Namespace) -> int:
    from protocol.security import create_keys

    public, secret = create_keys(args.folder, args.name)
    print(f"public key {public}\nsecret key {secret} (keep it on this machine only)")
    return 0


def add_keys(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="create a CURVE key pair for a server or a client")
    p.add_argument("folder", help="where to write NAME.key and NAME.key_secret")
    p.add_argument("--name", default="server", help="file name stem (default: server)")
    p.set_defaults(handler=_keys)
