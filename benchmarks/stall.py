"""How long the largest requests hold up everyone else: the latency of other clients'
requests (``GET /api/health`` over HTTP, an error round trip over ZeroMQ) against a running
``xdream serve`` while one client sends, back to back, the largest body or header the server
parses, or bodies far over the limit (declared, and chunked).

    python benchmarks/stall.py --seconds 10 --out benchmarks/results/stall.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import zmq

from protocol.codec import MAX_SERVER_HEADER_BYTES, Message, encode
from protocol.messages import PROTOCOL_VERSION, Response, Responses
from server.http.limits import MAX_BODY_BYTES
from xdream.testing.servers import Server, create_session

RESULTS = Path(__file__).resolve().parent / "results"
PROBE_EVERY_S = 0.02


def largest_json(session: str) -> tuple[str, bytes]:
    """The costliest body under the limit: as many tiny responses as fit."""
    one = {"presentation_id": "p", "stimulus_id": "g0-e0", "counts": [1]}
    n = (MAX_BODY_BYTES - 64) // (len(json.dumps(one)) + 2)
    body = json.dumps({"generation": 0, "responses": [one] * n}).encode()
    return f"/api/sessions/{session}/responses", body


def largest_header(session: str) -> list[bytes]:
    """The costliest header under the server's limit, likewise."""
    rows, size = [], 0
    while size < MAX_SERVER_HEADER_BYTES - 1024:
        rows.append(Response(presentation_id=f"p{len(rows)}", stimulus_id="g0-e0", counts=[1]))
        size += len(msgpack.packb(rows[-1].model_dump(mode="json"))) + 1
    return encode(Message(Responses(generation=0, responses=rows), session=session))


def post(port: int, path: str, body: bytes, chunked: bool = False) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    try:
        if chunked:
            pieces = (body[i : i + (1 << 16)] for i in range(0, len(body), 1 << 16))
            connection.request("POST", path, body=pieces, headers=headers, encode_chunked=True)
        else:
            connection.request("POST", path, body=body, headers=headers)
        connection.getresponse().read()
    except (BrokenPipeError, ConnectionResetError):  # refused and closed while sending
        pass
    finally:
        connection.close()


def probe_http(port: int) -> float:
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass
    return time.perf_counter() - t0


def measure(
    load: Callable[[], None] | None, seconds: float, http_port: int, prober: zmq.Socket
) -> dict[str, float]:
    """Probe both sides every :data:`PROBE_EVERY_S` for ``seconds`` while ``load`` runs back
    to back in a thread; the probes' latencies and how many loads were sent."""
    stop = threading.Event()
    sent = 0

    def run() -> None:
        nonlocal sent
        while load is not None and not stop.is_set():
            load()
            sent += 1

    bad = msgpack.packb({"v": PROTOCOL_VERSION, "type": "no-such-type", "id": "probe"})
    worker = threading.Thread(target=run)
    worker.start()
    http_ms, zmq_ms = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        http_ms.append(1000 * probe_http(http_port))
        t0 = time.perf_counter()
        prober.send(bad)
        prober.recv_multipart()
        zmq_ms.append(1000 * (time.perf_counter() - t0))
        time.sleep(PROBE_EVERY_S)
    stop.set()
    worker.join()
    stats = {"median": np.median, "p99": lambda a: np.quantile(a, 0.99), "max": np.max}
    return {
        "requests_sent": sent,
        **{
            f"{side}_{stat}_ms": round(float(f(np.array(values))), 2)
            for side, values in (("http_probe", http_ms), ("zmq_probe", zmq_ms))
            for stat, f in stats.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per load")
    parser.add_argument("--only", help="run only the loads whose name contains this")
    parser.add_argument("--out", type=Path, default=RESULTS / "stall.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "data", threads=None)
        try:
            session = create_session(server, generator="pixel", image_size=16, population=4)
            context = zmq.Context.instance()
            loader = context.socket(zmq.DEALER)
            loader.connect(server.zmq)
            prober = context.socket(zmq.DEALER)
            prober.connect(server.zmq)
            path, body = largest_json(session)
            header = largest_header(session)
            huge = b" " * (20 << 20)

            def zmq_load() -> None:
                loader.send_multipart(header)
                loader.recv_multipart()

            loads: dict[str, Callable[[], None] | None] = {
                "idle": None,
                f"http_json_{len(body)}_bytes": lambda: post(server.http_port, path, body),
                "http_20MB_declared": lambda: post(server.http_port, path, huge),
                "http_20MB_chunked": lambda: post(server.http_port, path, huge, chunked=True),
                f"zmq_header_{len(header[0])}_bytes": zmq_load,
            }
            results = {}
            for name, load in loads.items():
                if args.only and args.only not in name:
                    continue
                results[name] = measure(load, args.seconds, server.http_port, prober)
                print(name, json.dumps(results[name]), flush=True)
            assert server.process.poll() is None, "the server went down"
        finally:
            server.stop()
    report = {
        "machine": f"{platform.platform()}, {platform.processor() or 'cpu'}",
        "command": f"python benchmarks/stall.py --seconds {args.seconds}",
        "http_body_limit_bytes": MAX_BODY_BYTES,
        "server_header_limit_bytes": MAX_SERVER_HEADER_BYTES,
        "loads": results,
    }
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
