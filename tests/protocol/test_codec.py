"""The wire format: every message round-trips; every bad frame gets a named error."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from protocol import codec
from protocol.codec import Message, decode, encode
from protocol.errors import (
    MalformedMessage,
    MessageTooLarge,
    ProtocolError,
    UnknownMessageType,
    UnsupportedVersion,
)
from protocol.messages import (
    MESSAGE_TYPES,
    PROTOCOL_MINOR,
    PROTOCOL_VERSION,
    Bye,
    Error,
    Generation,
    GenerationAck,
    Heartbeat,
    Hello,
    Presentation,
    Presented,
    PresentedAck,
    Response,
    Responses,
    ResponsesAck,
    Role,
    Stimulus,
    Welcome,
)
from protocol.replies import error_reply
from xdream.testing.servers import ROOT

IMAGES = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)

EXAMPLES = [
    Message(Hello(roles=[Role.presenter, Role.recorder], name="rig-1", software="sim 1.0")),
    Message(Welcome(client_id="c1", heartbeat_s=1.0, server="xdream-rig")),
    Message(Heartbeat()),
    Message(
        Generation(
            generation=3,
            stimuli=[
                Stimulus(stimulus_id="g3-0", buffer=0),
                Stimulus(stimulus_id="ref-7", buffer=1, kind="reference", repeats=2),
            ],
        ),
        session="s1",
        buffers=(IMAGES[0], IMAGES[1]),
    ),
    Message(GenerationAck(generation=3), session="s1"),
    Message(
        Presented(
            generation=3,
            presentations=[
                Presentation(presentation_id="p1", stimulus_id="g3-0", onset=12.5, outcome="ok")
            ],
        ),
        session="s1",
    ),
    Message(
        Responses(
            generation=3,
            responses=[Response(presentation_id="p1", stimulus_id="g3-0", counts=[3, 0, 7])],
        ),
        session="s1",
    ),
    Message(ResponsesAck(accepted=1, duplicates=0), session="s1", reply_to="abc"),
    Message(PresentedAck(accepted=0, duplicates=1), session="s1", reply_to="abd"),
    Message(Error(code="UnknownSession", message="no session s9")),
    Message(Bye()),
    Message(
        Hello(
            roles=[Role.recorder], name="rig-1", protocol="1.1", client_id="c4", presentations=True
        )
    ),
]


def frames_of(header: dict, *buffers: bytes) -> list[bytes]:
    return [msgpack.packb(header, use_bin_type=True), *buffers]


def valid_header(**changes) -> dict:
    header = {
        "v": PROTOCOL_VERSION,
        "type": "heartbeat",
        "id": "m1",
        "session": None,
        "sent_at": 1.0,
        "reply_to": None,
        "content": {},
        "buffers": [],
    }
    header.update(changes)
    return header


def test_every_type_has_an_example():
    assert {m.type for m in EXAMPLES} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.type)
def test_round_trip(message):
    got = decode([bytes(f) for f in encode(message)])
    assert got.type == message.type
    assert got.content == message.content
    assert (got.id, got.session, got.sent_at, got.reply_to) == (
        message.id,
        message.session,
        message.sent_at,
        message.reply_to,
    )
    assert len(got.buffers) == len(message.buffers)
    for a, b in zip(got.buffers, message.buffers, strict=True):
        np.testing.assert_array_equal(a, b)


def test_buffers_are_not_copied_on_either_side():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    msg = Message(
        Generation(generation=0, stimuli=[Stimulus(stimulus_id="a", buffer=0)]), buffers=(image,)
    )
    frames = encode(msg)
    assert np.shares_memory(np.frombuffer(frames[1], dtype=np.uint8), image)
    wire = bytearray(bytes(frames[1]))
    got = decode([bytes(frames[0]), wire])
    wire[0] = 255  # the decoded image is a view on the received frame
    assert got.buffers[0][0, 0, 0] == 255
    # ... and read-only, even over a writable frame: a receiver cannot change what it got
    assert not got.buffers[0].flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        got.buffers[0][0, 0, 0] = 1


def test_unknown_fields_are_ignored_for_forward_compatibility():
    header = valid_header(
        type="hello",
        content={"roles": ["recorder"], "name": "r", "future_field": 1},
        new_top_level=2,
    )
    assert decode(frames_of(header)).content == Hello(roles=[Role.recorder], name="r")


@pytest.mark.parametrize(
    "frames, error, text",
    [
        ([], MalformedMessage, "empty"),
        ([b"\xc1\xc1"], MalformedMessage, "not msgpack"),
        ([msgpack.packb([1, 2])], MalformedMessage, "map"),
        ([pickle.dumps({"v": 1})], MalformedMessage, "not msgpack"),
        (frames_of(valid_header(v=2)), UnsupportedVersion, "speaks 1"),
        (frames_of(valid_header(v="1")), MalformedMessage, "integer protocol version"),
        (frames_of(valid_header(v=True)), MalformedMessage, "got bool"),
        (
            frames_of({k: v for k, v in valid_header().items() if k != "v"}),
            MalformedMessage,
            "got none",
        ),
        (frames_of(valid_header(id=b"abc")), MalformedMessage, "header id"),
        (frames_of(valid_header(sent_at="now")), MalformedMessage, "header sent_at"),
        (frames_of(valid_header(type="teleport")), UnknownMessageType, "teleport"),
        (frames_of(valid_header(id="")), MalformedMessage, "id"),
        (frames_of(valid_header(sent_at="yesterday")), MalformedMessage, "sent_at"),
        (
            frames_of(valid_header(type="hello", content={"roles": [], "name": "x"})),
            MalformedMessage,
            "hello: roles",
        ),
        (
            frames_of(valid_header(type="hello", content={"roles": ["juggler"], "name": "x"})),
            MalformedMessage,
            "roles",
        ),
        (
            frames_of(
                valid_header(type="hello", content={"roles": ["recorder", "recorder"], "name": "x"})
            ),
            MalformedMessage,
            "repeat",
        ),
        (
            frames_of(
                valid_header(
                    type="responses",
                    content={
                        "generation": 0,
                        "responses": [{"presentation_id": "p", "stimulus_id": "s", "counts": [-1]}],
                    },
                )
            ),
            MalformedMessage,
            "counts",
        ),
        (
            frames_of(
                valid_header(
                    type="responses",
                    content={
                        "generation": 0,
                        "responses": [
                            {"presentation_id": "p", "stimulus_id": "s", "counts": [float("nan")]}
                        ],
                    },
                )
            ),
            MalformedMessage,
            "counts",
        ),
        (
            frames_of(
                valid_header(
                    type="presented",
                    content={
                        "generation": 0,
                        "presentations": [
                            {
                                "presentation_id": "p",
                                "stimulus_id": "s",
                                "onset": 1,
                                "outcome": "maybe",
                            }
                        ],
                    },
                )
            ),
            MalformedMessage,
            "outcome",
        ),
        (
            frames_of(valid_header(buffers=[{"dtype": "uint8", "shape": [2]}])),
            MalformedMessage,
            "1 buffers, 0 arrived",
        ),
        (
            frames_of(valid_header(buffers=[{"dtype": "uint8", "shape": [3]}]), b"ab"),
            MalformedMessage,
            "needs 3 bytes",
        ),
        (
            frames_of(valid_header(buffers=[{"dtype": "object", "shape": [1]}]), b"a"),
            MalformedMessage,
            "dtype 'object'",
        ),
        (
            frames_of(valid_header(buffers=[{"dtype": "uint8", "shape": [-1]}]), b"a"),
            MalformedMessage,
            "invalid shape",
        ),
        (
            frames_of(
                valid_header(
                    type="generation",
                    content={"generation": 0, "stimuli": [{"stimulus_id": "a", "buffer": 1}]},
                    buffers=[{"dtype": "uint8", "shape": [1, 1, 3]}],
                ),
                b"abc",
            ),
            MalformedMessage,
            "no buffer 1",
        ),
        (
            frames_of(
                valid_header(
                    type="generation",
                    content={"generation": 0, "stimuli": [{"stimulus_id": "a", "buffer": 0}]},
                    buffers=[{"dtype": "uint8", "shape": [3]}],
                ),
                b"abc",
            ),
            MalformedMessage,
            "image must be uint8 (height, width, 3 or 4)",
        ),
    ],
)
def test_bad_frames_get_a_named_error(frames, error, text):
    with pytest.raises(error) as info:
        decode(frames)
    assert text in str(info.value)
    reply = error_reply(info.value)
    assert reply.content == Error(code=error.__name__, message=str(info.value))


def test_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with pytest.raises(MalformedMessage):
        decode([pickle.dumps(Evil())])
    # an msgpack extension holding a pickle stays an opaque, ignored value
    header = valid_header(content={"x": msgpack.ExtType(1, pickle.dumps(Evil()))})
    assert decode(frames_of(header)).content == Heartbeat()
    assert not marker.exists()


def test_size_limits(monkeypatch):
    with pytest.raises(MessageTooLarge, match=r"header of .* at most 64"):
        decode(frames_of(valid_header(content={"pad": "x" * 100})), max_header_bytes=64)
    monkeypatch.setattr(codec, "MAX_BUFFER_BYTES", 10)
    with pytest.raises(MessageTooLarge, match="buffer 0"):
        decode(frames_of(valid_header(buffers=[{"dtype": "uint8", "shape": [11]}]), b"x" * 11))
    monkeypatch.setattr(codec, "MAX_BUFFERS", 2)
    with pytest.raises(MessageTooLarge, match="3 raw frames"):
        decode([frames_of(valid_header())[0], b"", b"", b""])


def test_error_reply_points_at_the_request():
    request = EXAMPLES[6]
    reply = error_reply(MalformedMessage("bad"), request)
    assert reply.reply_to == request.id and reply.session == request.session
    assert reply.content.code == "MalformedMessage"


def test_over_real_zeromq_sockets_on_loopback():
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    try:
        for socket in (router, dealer):
            socket.setsockopt(zmq.RCVTIMEO, 5000)
            socket.setsockopt(zmq.LINGER, 0)
        request = EXAMPLES[3]
        dealer.send_multipart(encode(request), copy=False)
        identity, *frames = router.recv_multipart(copy=False)
        got = decode(frames)
        np.testing.assert_array_equal(got.buffers[1], IMAGES[1])
        router.send_multipart(
            [identity, *encode(Message(GenerationAck(generation=3), reply_to=got.id))], copy=False
        )
        ack = decode(dealer.recv_multipart())
        assert ack.content == GenerationAck(generation=3) and ack.reply_to == request.id
        with pytest.raises(zmq.ZMQError):  # ROUTER_MANDATORY: unknown peers are an error
            router.send_multipart([b"nobody", *encode(EXAMPLES[2])])
    finally:
        dealer.close()
        router.close()
        ctx.term()


def test_protocol_md_states_the_version_and_every_type():
    text = (ROOT / "PROTOCOL.md").read_text()
    assert re.search(rf"Protocol version: \*\*{PROTOCOL_VERSION}\*\*", text)
    assert f"minor version {PROTOCOL_VERSION}.{PROTOCOL_MINOR}" in text
    for name in MESSAGE_TYPES:
        assert f"### `{name}`" in text


def test_header_bytes_start_as_protocol_md_says():
    # PROTOCOL.md section 4: fixmap of 8 entries, the 1-char string "v", the fixint 1
    assert bytes(encode(Message(Heartbeat()))[0][:4]) == b"\x88\xa1v\x01"


@pytest.mark.parametrize("bad_type", [[1, 2], {"a": 1}, 7, None])
def test_a_non_string_type_is_a_malformed_message_not_a_crash(bad_type):
    with pytest.raises(MalformedMessage, match="header type: a string is required"):
        decode(frames_of(valid_header(type=bad_type)))


def test_an_unknown_string_type_is_an_unknown_message_type():
    with pytest.raises(UnknownMessageType, match="'teleport'"):
        decode(frames_of(valid_header(type="teleport")))


@pytest.mark.parametrize(
    "header",
    [
        {"v": 1, "type": "heartbeat", "id": "m1", "session": "s1", "content": {"x": float("nan")},
         "sent_at": "broken"},
        {"v": 9, "type": "heartbeat", "id": "m1", "session": "s1"},
        {"v": 1, "type": "teleport", "id": "m1", "session": "s1"},
        {"v": 1, "type": "responses", "id": "m1", "session": "s1", "content": {"generation": -1}},
    ],
)  # fmt: skip
def test_an_error_points_at_the_message_whenever_its_id_could_be_read(header):
    with pytest.raises(ProtocolError) as caught:
        decode(frames_of(header))
    reply = error_reply(caught.value)
    assert (reply.reply_to, reply.session) == ("m1", "s1")


@pytest.mark.parametrize("bad_id", [None, b"m1", 7, "", "x" * 129])
def test_an_unreadable_id_gets_an_error_pointing_nowhere(bad_id):
    with pytest.raises(ProtocolError) as caught:
        decode(frames_of(valid_header(id=bad_id, type="teleport")))
    assert error_reply(caught.value).reply_to is None


def test_only_id_v_and_type_are_required_in_a_header():
    message = decode(frames_of({"v": 1, "type": "heartbeat", "id": "m1"}))
    assert message.session is None and message.reply_to is None and message.buffers == ()


@pytest.mark.parametrize(
    "content",
    [
        {"generation": "0", "responses": [{"presentation_id": "p", "stimulus_id": "s",
                                           "counts": [1]}]},
        {"generation": True, "responses": [{"presentation_id": "p", "stimulus_id": "s",
                                            "counts": [1]}]},
        {"generation": 0, "responses": [{"presentation_id": "p", "stimulus_id": "s",
                                         "counts": [True]}]},
        {"generation": 0, "responses": [{"presentation_id": "p", "stimulus_id": "s",
                                         "counts": ["3"]}]},
        {"generation": 0, "responses": [{"presentation_id": b"p", "stimulus_id": "s",
                                         "counts": [1]}]},
    ],
)  # fmt: skip
def test_content_types_are_strict(content):
    with pytest.raises(MalformedMessage, match="responses: "):
        decode(frames_of(valid_header(type="responses", content=content)))


def test_unknown_keys_in_a_buffer_description_are_ignored():
    header = valid_header(buffers=[{"dtype": "uint8", "shape": [2], "future": 1}])
    np.testing.assert_array_equal(decode(frames_of(header, b"ab")).buffers[0], [97, 98])


def test_protocol_md_lists_every_wire_error_code():
    """protocol/errors.py holds only errors that travel on the wire: each has a row in
    PROTOCOL.md's table of codes, and its code is its class name."""
    import inspect

    from protocol import errors

    text = (ROOT / "PROTOCOL.md").read_text()
    wire = [
        cls
        for cls in vars(errors).values()
        if inspect.isclass(cls)
        and issubclass(cls, errors.XDreamError)
        and cls not in (errors.XDreamError, errors.ProtocolError)
    ]
    assert len(wire) >= 14
    for cls in wire:
        assert f"| `{cls.__name__}` |" in text, cls.__name__
        assert cls("x").code == cls.__name__
