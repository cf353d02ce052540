"""``xdream record``: spike counts from a CSV file or a pipe, sent to the server.

One row per presentation::

    session,generation,presentation_id,stimulus_id,ch0,ch1,...
    a1b2c3d4,0,g0-e0-b0-r0,g0-e0,12,3

A header row (its first cell ``session``) is skipped. From a file, consecutive rows of one
generation go in one message; from stdin (``-``), every row is sent as it arrives, so a
recording program can pipe counts in trial by trial. A row the server refuses is reported
on stderr with the server's reason, and the rest still go; the exit status is 1 if any was
refused.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO

from protocol.errors import ConfigError
from protocol.messages import Response
from rig_clients.connection import Connection, RequestFailed
from rig_clients.recorder import BATCH, Recorder

Key = tuple[str, int]


def parse_rows(lines: Iterable[str]) -> Iterator[tuple[Key, Response]]:
    """(session, generation) and the response of every data row (ConfigError on bad rows)."""
    for number, row in enumerate(csv.reader(lines), start=1):
        if not row or (number == 1 and row[0].strip() == "session"):
            continue
        if len(row) < 5:
            raise ConfigError(
                f"row {number}: need session, generation, presentation_id, stimulus_id "
                f"and at least one channel, got {len(row)} cells"
            )
        try:
            generation = int(row[1])
            counts = [float(c) for c in row[4:]]
        except ValueError as exc:
            raise ConfigError(f"row {number}: {exc}") from None
        key = (row[0].strip(), generation)
        yield (
            key,
            Response(presentation_id=row[2].strip(), stimulus_id=row[3].strip(), counts=counts),
        )


def send_all(recorder: Recorder, rows: Iterable[tuple[Key, Response]], stream: bool) -> int:
    """Send rows in batches of one generation (one row at a time when ``stream``);
    the number of responses the server refused."""
    refused = 0
    batch: list[Response] = []
    key: Key | None = None

    def flush() -> None:
        nonlocal refused
        if key is None or not batch:
            return
        try:
            recorder.send(key[0], key[1], batch)
        except RequestFailed as exc:
            refused += len(batch)
            print(f"xdream record: {len(batch)} refused: {exc}", file=sys.stderr, flush=True)
        batch.clear()

    for row_key, response in rows:
        if row_key != key or len(batch) >= BATCH:
            flush()
            key = row_key
        batch.append(response)
        if stream:
            flush()
    flush()
    return refused


def main(path: str, connection: Connection) -> int:
    """Send the rows of ``path`` (``-``: stdin) over ``connection`` (registered here, and
    again whenever the server restarts); exit status 1 if any row was refused."""
    connection.connect()
    try:
        handle: TextIO = sys.stdin if path == "-" else open(path, newline="")  # noqa: SIM115
        with handle:
            refused = send_all(Recorder(connection), parse_rows(handle), stream=path == "-")
    finally:
        connection.close()
    return 1 if refused else 0
