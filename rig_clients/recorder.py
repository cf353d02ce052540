"""The recorder's side of the protocol: spike counts to the server, acknowledged.

:meth:`Recorder.send` waits for the server's ``responses_ack`` and resends the same message
until it comes, so counts survive a lost connection; the server ignores repeats. An
``error`` reply (unknown stimulus, late response, ...) raises
:class:`~rig_clients.connection.RequestFailed` with the server's code and message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgpack

from protocol.codec import MAX_SERVER_HEADER_BYTES
from protocol.messages import Response, Responses, ResponsesAck
from rig_clients.connection import Connection

#: Most responses per message: small enough to resend cheaply.
BATCH = 1000
#: Most bytes of responses per message: half the server's header limit, the rest is margin
#: for the header's own fields.
BATCH_BYTES = MAX_SERVER_HEADER_BYTES // 2


def batches(responses: Sequence[Response]) -> Iterator[list[Response]]:
    """``responses`` in order, cut into messages the server takes: at most :data:`BATCH`
    responses and :data:`BATCH_BYTES` of encoded counts each (many channels make each
    response large)."""
    batch: list[Response] = []
    size = 0
    for response in responses:
        encoded = len(msgpack.packb(response.model_dump(mode="json")))
        if batch and (len(batch) >= BATCH or size + encoded > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(response)
        size += encoded
    if batch:
        yield batch


class Recorder:
    """Sends spike counts over ``connection``."""

    def __init__(self, connection: Connection, timeout_s: float | None = None) -> None:
        self.connection = connection
        #: How long one message may wait for its acknowledgement; None: as long as the
        #: connection keeps trying (its ``give_up_s``, by default for ever), so counts
        #: survive a server that is away for minutes.
        self.timeout_s = timeout_s

    def send(self, session: str, generation: int, responses: Sequence[Response]) -> ResponsesAck:
        """Send ``responses`` of one generation; the server's total acknowledgement."""
        accepted = duplicates = 0
        for batch in batches(responses):
            content = Responses(generation=generation, responses=batch)
            reply = self.connection.request(
                content, ResponsesAck, session=session, timeout_s=self.timeout_s
            )
            ack: ResponsesAck = reply.content  # type: ignore[assignment]
            accepted += ack.accepted
            duplicates += ack.duplicates
        return ResponsesAck(accepted=accepted, duplicates=duplicates)
