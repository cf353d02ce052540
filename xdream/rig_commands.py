"""``xdream present``, ``record`` and ``keys``: what runs on rig PCs, with the base install
(no torch, no server packages)."""

from __future__ import annotations

import argparse

from protocol.errors import ConfigError
from xdream.common import add_client_options, client_connection

#: ``xdream record`` options that only --lsl takes (argparse defaults None: not given).
_LSL_OPTIONS = ("markers", "channels", "latency_s", "evoked_ms", "baseline_ms")


def _record(args: argparse.Namespace) -> int:
    from protocol.messages import Role

    given = {k: getattr(args, k) for k in _LSL_OPTIONS if getattr(args, k) is not None}
    if args.lsl is None:
        if given:
            raise ConfigError(f"--{next(iter(given)).replace('_', '-')} needs --lsl")
        from rig_clients import record

        return record.main(args.file, client_connection(args, [Role.recorder]))
    if args.file != "-":
        raise ConfigError("counts come from a CSV file or from --lsl, not both")
    from rig_clients import lsl_record
    from rig_clients.trial_counts import Windows

    windows = {k: tuple(given.pop(k)) for k in ("evoked_ms", "baseline_ms") if k in given}
    settings = lsl_record.LslSettings(args.lsl, windows=Windows(**windows), **given)
    return lsl_record.main(settings, client_connection(args, [Role.recorder]))


def add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="send spike counts from a CSV file, stdin or LSL streams",
        description="Send spike counts, one CSV row per presentation: session, generation, "
        "presentation_id, stimulus_id, then one column per channel. With --lsl: count "
        "spikes per trial from Lab Streaming Layer streams (pip install 'xdream-rig[lsl]').",
    )
    add_client_options(p, "recorder")
    p.add_argument("file", nargs="?", default="-", help="CSV file (default: stdin, row by row)")
    lsl = p.add_argument_group("LSL", "count spikes at the onsets a presenter marks on LSL")
    lsl.add_argument(
        "--lsl",
        metavar="SPIKES",
        help="spike stream's name (or type): events (rate 0, value = channel index) or "
        "binned counts (regular rate)",
    )
    lsl.add_argument("--markers", metavar="NAME", help="onset markers (default xdream-markers)")
    for name, default in (("evoked", "50 200"), ("baseline", "0 45")):
        lsl.add_argument(
            f"--{name}-ms",
            nargs=2,
            type=float,
            metavar=("A", "B"),
            help=f"{name} window [A, B), ms after onset (default {default})",
        )
    lsl.add_argument(
        "--channels", type=int, metavar="N", help="event stream's channels (default: its desc)"
    )
    lsl.add_argument(
        "--latency-s", type=float, metavar="S", help="how late spikes and markers may come (0.25)"
    )
    p.set_defaults(handler=_record)


def _present(args: argparse.Namespace) -> int:
    from protocol.messages import Role

    if (args.folder is None) == (not args.window):
        raise ConfigError("give --folder DIR or --window (one of the two)")
    if args.folder is not None:
        from rig_clients import folder

        return folder.main(args.folder, client_connection(args, [Role.presenter, Role.recorder]))
    from pathlib import Path

    from rig_clients.window import display
    from rig_clients.window.geometry import MonitorProfile
    from rig_clients.window.screen import Look

    if args.size is not None and args.fullscreen:
        raise ConfigError("--size is a window's size: not with --fullscreen")
    profile = MonitorProfile.load(args.monitor) if args.monitor else MonitorProfile()
    look = Look(
        background=args.background,
        photodiode=None if args.photodiode == "none" else args.photodiode,
        photodiode_px=args.photodiode_px,
        fixation_deg=args.fixation_deg,
    )
    return display.main(
        client_connection(args, [Role.presenter]), profile, look,
        fullscreen=args.fullscreen, screen_index=args.screen,
        size=tuple(args.size) if args.size is not None else None, pace_hz=args.pace_hz,
        lsl_markers=args.lsl_markers, seed=args.seed,
        snapshots=Path(args.snapshots) if args.snapshots else None,
    )  # fmt: skip


def add_present(sub: argparse._SubParsersAction) -> None:
    from rig_clients.window.geometry import CORNERS

    p = sub.add_parser(
        "present",
        help="present generations in a window, or through a folder (MonkeyLogic style)",
        description="--window: show each block on this PC's display, timed in frames, with "
        "a photodiode patch (pip install 'xdream-rig[window]'). --folder: write each block's "
        "images to a folder and send back the responses the rig writes there (block files as "
        "in the reference XDream).",
    )
    add_client_options(p, "presenter")
    p.add_argument("--folder", help="exchange folder shared with the stimulus computer")
    w = p.add_argument_group("window", "a stimulus display on this PC (docs/deploy.md)")
    w.add_argument("--window", action="store_true", help="present in a window")
    w.add_argument(
        "--monitor",
        metavar="FILE",
        help="monitor profile, JSON: distance_cm, width_cm, resolution [w, h], refresh_hz "
        "(default 57 cm, 53 cm, 1920x1080, rate as measured)",
    )
    w.add_argument("--fullscreen", action="store_true", help="cover the whole screen")
    w.add_argument("--screen", type=int, default=0, help="which screen (default 0)")
    w.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        help="window size in pixels (default: the profile's resolution); degrees stay the "
        "monitor's, from the profile",
    )
    w.add_argument(
        "--photodiode",
        choices=[*CORNERS, "none"],
        default="bottom-left",
        help="corner of the photodiode patch: white on stimulus frames, black otherwise",
    )
    w.add_argument("--photodiode-px", type=int, default=40, help="patch side in pixels (40)")
    w.add_argument("--fixation-deg", type=float, help="fixation point diameter (default: none)")
    w.add_argument("--background", type=int, default=128, help="grey level 0-255 (128)")
    w.add_argument(
        "--pace-hz",
        type=float,
        help="pace frames in software at this rate, for displays without vsync (Xvfb, tests)",
    )
    w.add_argument(
        "--lsl-markers", action="store_true", help="publish onsets on LSL (xdream-markers)"
    )
    w.add_argument("--seed", type=int, help="seed of the trial order (default: random)")
    w.add_argument(
        "--snapshots", metavar="DIR", help="save the first stimulus and blank frames as PNG"
    )
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
