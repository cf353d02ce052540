"""The ``xdream`` command: one entry point, one subcommand per job.

Subcommand modules are imported only when chosen, so rig-PC commands never import torch.
Every deliberate error (``XDreamError``) becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from protocol.errors import ConfigError, XDreamError


def _share_cpus_politely() -> None:
    """Let idle OpenMP threads sleep instead of spinning (before torch is imported).

    The server and a simulator often share one machine; spinning threads of the process
    that just finished steal the cores from the one that works next (the loop benchmark
    measured the in-silico loop 20-30 % slower that way). ``OMP_WAIT_POLICY`` set by the
    user wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _settings(pairs: list[str]) -> dict[str, Any]:
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


class _ProgressBar:
    """A one-line progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_decile = -1

    def __call__(self, done: int, total: int, tracker) -> None:
        frac = done / total
        bar = "#" * int(30 * frac)
        line = (
            f"gen {done}/{total} [{bar:<30}] best {tracker.best_score:.3g} "
            f"mean {tracker.means[-1]:.3g} {time.perf_counter() - self.start:.0f}s"
        )
        if self.tty:
            print("\r" + line, end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif int(frac * 10) > self._last_decile or done == total:
            self._last_decile = int(frac * 10)
            print(line, file=sys.stderr, flush=True)


def _evolve(args: argparse.Namespace) -> int:
    from server.engine.generators import default_generator
    from server.engine.optimizers import DEFAULT_OPTIMIZER
    from simulator import evolve

    config = evolve.EvolveConfig(
        target=args.target,
        out=args.out,
        generator=args.generator or default_generator(),
        optimizer=args.optimizer or DEFAULT_OPTIMIZER,
        budget=args.budget,
        noise=args.noise,
        repeats=args.repeats,
        seed=args.seed,
        weights=args.weights,
        image_size=args.image_size,
        input_size=args.input_size,
        device=args.device,
        references=args.references,
        reference_folder=args.reference_folder,
        network_weights=args.network_weights,
        settings=_settings(args.set),
    )
    prepared = evolve.prepare(config)
    summary = evolve.run(prepared, progress=None if args.quiet else _ProgressBar())
    if args.json:
        print(json.dumps(summary))
    else:
        rel = ""
        if summary["best_reference"]:
            ratio = summary["best_activation"] / summary["best_reference"]
            rel = f" (noiseless {ratio:.2f}x the best natural image)"
        print(
            f"best score {summary['best_score']:.4g}{rel}; mean first generation "
            f"{summary['first_generation_mean']:.4g}, last {summary['last_generation_mean']:.4g}; "
            f"{summary['images']} images in {summary['seconds']:.1f}s; "
            f"data in {summary['data_file']}"
        )
    return 0


def _add_evolve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evolve",
        help="evolve images for a simulated ConvNet unit, in process",
        description="Run one XDream session against an in-silico unit and save it to DIR.",
    )
    p.add_argument(
        "--target",
        default="efficientnet-lite0:_fc:1",
        help="NETWORK:LAYER:CHANNEL[:X:Y] (default: %(default)s)",
    )
    p.add_argument(
        "--generator",
        help="fc6..norm1, pixel, fourier (default: fc6 when its "
        "weights are installed, else the offline default)",
    )
    p.add_argument("--optimizer", help="ga, cmaes, cmaes-chol, nes, fdgd (default: cmaes)")
    p.add_argument("--budget", type=int, default=3000, help="images to present (default 3000)")
    p.add_argument(
        "--noise", default="none", help="none or poisson:K (K spikes to a good natural image)"
    )
    p.add_argument("--repeats", type=int, default=1, help="presentations averaged per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (must not hold a session)")
    p.add_argument("--weights", help="DeePSiM weights file (default: the weights directory)")
    p.add_argument("--image-size", type=int, help="side of generated images in px")
    p.add_argument("--network-weights", help="state dict for a torchvision:ARCH target network")
    p.add_argument("--input-size", type=int, help="side the network sees (default: its own)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--references",
        type=int,
        default=100,
        help="natural reference images for calibration and comparison (default 100)",
    )
    p.add_argument(
        "--reference-folder",
        help="folder of reference photos (default: scikit-image's bundled ones)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="optimizer setting, e.g. --set population=40 (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON summary line at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_evolve)


def _serve(args: argparse.Namespace) -> int:
    _share_cpus_politely()
    from server import serve
    from server.http.access import load_token

    return serve.main(
        serve.ServeConfig(
            zmq=args.zmq,
            http=args.http,
            data=args.data,
            heartbeat_s=args.heartbeat,
            curve_secret=args.curve_secret,
            curve_clients=args.curve_clients,
            token=load_token(args.token_file),
            device=args.device,
        )
    )


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the rig server (ZeroMQ), its HTTP API and the dashboard",
        description="Serve rigs over ZeroMQ, and the API and the operator's dashboard over "
        "HTTP; resumes unfinished sessions found in --data.",
    )
    p.add_argument("--zmq", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint to bind")
    p.add_argument(
        "--http", default="127.0.0.1:8000", help="HOST:PORT for the HTTP API and the dashboard"
    )
    p.add_argument(
        "--token-file",
        help="file holding the HTTP access token (default: $XDREAM_TOKEN); needed when "
        "--http is reachable beyond this machine",
    )
    p.add_argument("--data", default="data", help="folder of session files (default: ./data)")
    p.add_argument("--heartbeat", type=float, default=1.0, help="heartbeat interval, seconds")
    p.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda or cuda:N for sessions that name none (default: auto, the GPU "
        "when torch sees one)",
    )
    p.add_argument("--curve-secret", help="server's CURVE secret key file (beyond loopback)")
    p.add_argument("--curve-clients", help="folder of authorised clients' public key files")
    p.set_defaults(handler=_serve)


def _client_security(args: argparse.Namespace):
    """A socket configurator for CURVE, when both key options are given."""
    if not (args.server_key or args.client_key):
        return None
    if not (args.server_key and args.client_key):
        raise ConfigError("CURVE needs both --server-key and --client-key")
    from protocol.security import configure_client

    return lambda sock: configure_client(sock, args.server_key, args.client_key)


def _add_client_options(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--server", default="tcp://127.0.0.1:5555", help="server's ZeroMQ endpoint")
    p.add_argument("--name", default=name, help="name shown to the operator (a session's rig)")
    p.add_argument("--server-key", help="server's CURVE public key file (beyond loopback)")
    p.add_argument("--client-key", help="this client's CURVE secret key file")


def _simulate(args: argparse.Namespace) -> int:
    _share_cpus_politely()
    from simulator import client

    rig = client.build(
        client.SimulatorConfig(
            server=args.server,
            target=args.target,
            noise=args.noise,
            channels=args.channels,
            abort_rate=args.abort_rate,
            latency_ms=args.latency_ms,
            seed=args.seed,
            name=args.name,
            device=args.device,
        ),
        configure=_client_security(args),
    )
    try:
        rig.run()
    finally:
        rig.connection.close()
    return 0


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="play a rig (presenter and recorder) with in-silico units",
        description="Connect to a server as presenter and recorder and answer every block "
        "with spike counts of ConvNet units.",
    )
    _add_client_options(p, "simulator")
    p.add_argument("--target", default="efficientnet-lite0:_fc:1", help="NETWORK:LAYER:CHANNEL")
    p.add_argument("--noise", default="poisson:20", help="none or poisson:K (default poisson:20)")
    p.add_argument("--channels", type=int, default=1, help="neighbouring units recorded")
    p.add_argument("--abort-rate", type=float, default=0.0, help="fraction of trials aborted")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay before each reply")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(handler=_simulate)


def _demo(args: argparse.Namespace) -> int:
    _share_cpus_politely()
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
        )
    )


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="server + simulated rig on loopback, one session",
        description="Start a server and a simulator on loopback and run one session with "
        "the offline default generator.",
    )
    p.add_argument("--generations", type=int, help="stop after N generations (default: run on)")
    p.add_argument("--data", help="folder for the session file (default: a new temp folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON summary line at the end")
    p.set_defaults(handler=_demo)


def _record(args: argparse.Namespace) -> int:
    from rig_clients import record

    return record.main(args.file, args.server, args.name, _client_security(args))


def _add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="send spike counts from a CSV file or stdin",
        description="Send spike counts, one CSV row per presentation: session, generation, "
        "presentation_id, stimulus_id, then one column per channel.",
    )
    _add_client_options(p, "recorder")
    p.add_argument("file", nargs="?", default="-", help="CSV file (default: stdin, row by row)")
    p.set_defaults(handler=_record)


def _present(args: argparse.Namespace) -> int:
    from rig_clients import folder

    if args.folder is None:
        raise ConfigError("give --folder DIR (the window front end is not available yet)")
    return folder.main(args.folder, args.server, args.name, _client_security(args))


def _add_present(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "present",
        help="present generations through a folder (MonkeyLogic style)",
        description="Write each block's images to a folder and send back the responses "
        "the rig writes there (block files as in the reference XDream).",
    )
    _add_client_options(p, "presenter")
    p.add_argument("--folder", help="exchange folder shared with the stimulus computer")
    p.set_defaults(handler=_present)


def _keys(args: argparse.Namespace) -> int:
    from protocol.security import create_keys

    public, secret = create_keys(args.folder, args.name)
    print(f"public key {public}\nsecret key {secret} (keep it on this machine only)")
    return 0


def _health(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from server.http.access import load_token

    token = load_token(args.token_file)
    request = urllib.request.Request(
        f"http://{args.http}/api/health",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as reply:
            print(reply.read().decode())
    except (urllib.error.URLError, OSError) as exc:
        print(f"xdream health: {args.http} is not healthy: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_health(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "health",
        help="check that a server answers (exit status 0 or 1; for container health checks)",
    )
    p.add_argument("--http", default="127.0.0.1:8000", help="the server's HOST:PORT")
    p.add_argument("--token-file", help="access token file (default: $XDREAM_TOKEN)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds")
    p.set_defaults(handler=_health)


def _token(args: argparse.Namespace) -> int:
    from server.http.access import create_token

    path = create_token(args.file)
    print(f"wrote a new access token to {path} (readable by you only; never share it by mail)")
    return 0


def _add_token(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="create an HTTP access token file for `serve`")
    p.add_argument("file", help="where to write the token (must not exist)")
    p.set_defaults(handler=_token)


def _add_keys(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="create a CURVE key pair for a server or a client")
    p.add_argument("folder", help="where to write NAME.key and NAME.key_secret")
    p.add_argument("--name", default="server", help="file name stem (default: server)")
    p.set_defaults(handler=_keys)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xdream", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_evolve,
        _add_serve,
        _add_demo,
        _add_simulate,
        _add_present,
        _add_record,
        _add_keys,
        _add_token,
        _add_health,
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
