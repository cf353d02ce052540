"""The presenter's side of the protocol, for any display front end.

A front end (a folder for MonkeyLogic, a window, the simulator) calls :meth:`Presenter.
next_block` to receive a block of images, shows them however it does, and reports each
presentation with its rig-clock onset and outcome. Receiving a block acknowledges it, so the
server stops resending; a block that arrives again (a resend that crossed the ack) is
acknowledged again and not handed out twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from protocol.codec import Message
from protocol.messages import (
    Generation,
    GenerationAck,
    Presentation,
    PresentationParams,
    Presented,
    Stimulus,
)
from protocol.replies import reply
from rig_clients.connection import Connection


@dataclass
class Block:
    """One block of a generation: the stimuli to show, each with its image."""

    session: str
    generation: int
    block: int
    stimuli: list[Stimulus]
    images: list[np.ndarray]
    params: PresentationParams

    def presentation_id(self, stimulus_id: str, repeat: int) -> str:
        """A presentation id unique within the session (PROTOCOL.md section 6)."""
        return f"{stimulus_id}-b{self.block}-r{repeat}"


class Presenter:
    """Receives generations and reports presentations over ``connection``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._handed_out: set[tuple[str, int, int]] = set()
        #: Messages that are not generations (e.g. errors), for the caller to inspect.
        self.other: list[Message] = []

    def next_block(self, timeout_s: float = 1.0) -> Block | None:
        """The next new block, acknowledged; None if none arrived within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            message = self.connection.poll(min(left, 0.2))
            if message is None:
                continue
            content = message.content
            if not isinstance(content, Generation) or message.session is None:
                self.other.append(message)
                continue
            ack = GenerationAck(generation=content.generation, block=content.block)
            self.connection.send(reply(message, ack))
            key = (message.session, content.generation, content.block)
            if key in self._handed_out:
                continue
            self._handed_out.add(key)
            return Block(
                message.session,
                content.generation,
                content.block,
                list(content.stimuli),
                [message.buffers[s.buffer] for s in content.stimuli],
                content.params,
            )
        return None

    def report(self, block: Block, presentations: list[Presentation]) -> None:
        """Tell the server what was shown (or aborted), with onsets in the rig's clock."""
        if presentations:
            content = Presented(generation=block.generation, presentations=presentations)
            self.connection.send(Message(content, session=block.session))
