"""The recorder's side of the protocol: spike counts to the server, acknowledged.

:meth:`Recorder.send` waits for the server's ``responses_ack`` and resends the same message
until it comes, so counts survive a lost connection; the server ignores repeats. An
``error`` reply (unknown stimulus, late response, ...) raises
:class:`~rig_clients.connection.RequestFailed` with the server's code and message.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.messages import Response, Responses, ResponsesAck
from rig_clients.connection import Connection

#: Responses per message: well under the protocol's limit, small enough to resend cheaply.
BATCH = 1000


class Recorder:
    """Sends spike counts over ``connection``."""

    def __init__(self, connection: Connection, timeout_s: float = 60.0) -> None:
        self.connection = connection
        self.timeout_s = timeout_s

    def send(self, session: str, generation: int, responses: Sequence[Response]) -> ResponsesAck:
        """Send ``responses`` of one generation; the server's total acknowledgement."""
        accepted = duplicates = 0
        for start in range(0, len(responses), BATCH):
            content = Responses(
                generation=generation, responses=list(responses[start : start + BATCH])
            )
            reply = self.connection.request(
                content, ResponsesAck, session=session, timeout_s=self.timeout_s
            )
            ack: ResponsesAck = reply.content  # type: ignore[assignment]
            accepted += ack.accepted
            duplicates += ack.duplicates
        return ResponsesAck(accepted=accepted, duplicates=duplicates)
