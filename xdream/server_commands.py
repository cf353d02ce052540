"""``xdream serve``, ``demo``, ``health``, ``token`` and ``export``: the server side (the
server extra; ``export --nwb`` also the nwb extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xdream.common import share_cpus_politely


def _serve(args: argparse.Namespace) -> int:
    share_cpus_politely()
    from server import serve
    from server.settings import load_settings

    return serve.main(
        load_settings(
            zmq=args.zmq,
            http=args.http,
            data=args.data,
            heartbeat_s=args.heartbeat,
            max_sessions=args.max_sessions,
            curve_secret=args.curve_secret,
            curve_clients=args.curve_clients,
            token_file=args.token_file,
            device=args.device,
            weights_roots=args.weights_root,
            reference_roots=args.reference_root,
        )
    )


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the rig server (ZeroMQ), its HTTP API and the dashboard",
        description="Serve rigs over ZeroMQ, and the API and the operator's dashboard over "
        "HTTP; resumes unfinished sessions found in --data. Each option not given is read "
        "from $XDREAM_<NAME> (e.g. XDREAM_DATA), else its default.",
    )
    p.add_argument("--zmq", help="ZeroMQ endpoint to bind (default: tcp://127.0.0.1:5555)")
    p.add_argument(
        "--http", help="HOST:PORT for the HTTP API and the dashboard (default: 127.0.0.1:8000)"
    )
    p.add_argument(
        "--token-file",
        help="file holding the HTTP access token (default: $XDREAM_TOKEN); needed when "
        "--http is reachable beyond this machine",
    )
    p.add_argument("--data", help="folder of session files (default: ./data)")
    p.add_argument("--heartbeat", type=float, help="heartbeat interval, seconds (default: 1)")
    p.add_argument(
        "--max-sessions",
        type=int,
        help="most sessions held live at once; more are refused until one ends (default: 8)",
    )
    p.add_argument(
        "--device",
        help="auto, cpu, cuda or cuda:N for sessions that name none (default: auto, the GPU "
        "when torch sees one)",
    )
    p.add_argument(
        "--weights-root",
        action="append",
        metavar="DIR",
        help="a folder sessions may take generator weights from (repeatable; default: the "
        "weights folder, $XDREAM_WEIGHTS_DIR or the per-user one)",
    )
    p.add_argument(
        "--reference-root",
        action="append",
        metavar="DIR",
        help="a folder sessions may take reference photos from (repeatable; default: "
        "DATA/references)",
    )
    p.add_argument("--curve-secret", help="server's CURVE secret key file (beyond loopback)")
    p.add_argument("--curve-clients", help="folder of authorised clients' public key files")
    p.set_defaults(handler=_serve)


def _demo(args: argparse.Namespace) -> int:
    share_cpus_politely()
    from server import serve
    from xdream import demo

    if not args.json:
        serve.configure_logging()
    return demo.main(
        demo.DemoConfig(
            generations=args.generations,
            data=args.data,
            seed=args.seed,
            json=args.json,
            threads=args.threads,
        )
    )


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="server + simulated rig on loopback, one session",
        description="Start a server and a simulator on loopback and run one session with "
        "the offline default generator.",
    )
    p.add_argument("--generations", type=int, help="stop after N generations (default: run on)")
    p.add_argument("--data", help="folder for the session file (default: a new temp folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: the default search and the 2020 paper's GA as two threads, interleaved "
        "in the same blocks on the same unit",
    )
    p.add_argument("--json", action="store_true", help="print one JSON summary line at the end")
    p.set_defaults(handler=_demo)


def _health(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from server.settings import load_settings

    settings = load_settings(http=args.http, token_file=args.token_file)
    token = settings.secret_token
    request = urllib.request.Request(
        f"http://{settings.http}/api/health",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as reply:
            print(reply.read().decode())
    except (urllib.error.URLError, OSError) as exc:
        print(f"xdream health: {settings.http} is not healthy: {exc}", file=sys.stderr)
        return 1
    return 0


def add_health(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "health",
        help="check that a server answers (exit status 0 or 1; for container health checks)",
    )
    p.add_argument(
        "--http", help="the server's HOST:PORT (default: $XDREAM_HTTP or 127.0.0.1:8000)"
    )
    p.add_argument("--token-file", help="access token file (default: $XDREAM_TOKEN)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds")
    p.set_defaults(handler=_health)


def _token(args: argparse.Namespace) -> int:
    from server.http.access import create_token

    path = create_token(args.file)
    print(f"wrote a new access token to {path} (readable by you only; never share it by mail)")
    return 0


def add_token(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="create an HTTP access token file for `serve`")
    p.add_argument("file", help="where to write the token (must not exist)")
    p.set_defaults(handler=_token)


def _export(args: argparse.Namespace) -> int:
    from server.storage.nwb_export import SubjectInfo, export_nwb

    subject = SubjectInfo(args.subject, args.species, args.sex, args.age)
    done = export_nwb(Path(args.session), Path(args.out), subject)
    counts = f"{done.images} images, {done.trials} trials, {done.responses} responses"
    print(f"wrote {done.path}: {counts}")
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a session file in another format (NWB)",
        description="Write a stored session file (DATA/<id>.h5) as an NWB file: images, "
        "trials, spike counts, codes, scores, settings and the event log (docs/nwb.md). "
        "A session a server is running: download /api/sessions/<id>/session.nwb instead.",
    )
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument(
        "--nwb", action="store_const", const="nwb", dest="format",
        help="Neurodata Without Borders (needs pip install 'xdream-rig[nwb]')",
    )  # fmt: skip
    p.add_argument("session", metavar="SESSION.h5", help="the session file")
    p.add_argument("out", metavar="OUT.nwb", help="the file to write (must not exist)")
    p.add_argument("--subject", help="the subject's id (default: the session's subject)")
    p.add_argument("--species", help="Latin binomial, e.g. 'Macaca mulatta'")
    p.add_argument("--sex", choices=("M", "F", "O", "U"), help="default: U (unknown)")
    p.add_argument("--age", help="ISO 8601 duration, e.g. P6Y (six years)")
    p.set_defaults(handler=_export)
