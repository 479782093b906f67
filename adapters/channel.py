"""Whole messages of any size between the server and an engine process, over one stream socket.

A message is one frame: a 4-byte big-endian length, then the message as MessagePack (msgspec; no
pickle, so a message can only ever decode to one of the types declared here). Frames are written and
read whole whatever their size, so a 1 MB prompt cannot tear the stream the way
``multiprocessing.Connection.send`` did on a non-blocking pipe (issue 7).

The server side (``AsyncFrames``) uses asyncio streams: writes go to the transport's buffer and never
block the event loop, reads wait for a whole frame. The engine side (``BlockingFrames``) is a plain
blocking socket: the engine process has nothing else to do while it sends. Why a socketpair with
asyncio streams rather than pyzmq: both ends are ours, one peer each, and the stream gives what ZeroMQ
would not: end-of-file the moment the engine process dies, which supervision relies on; it adds no
dependency. Measured in ``python -m bench`` (see the commit that brought it in).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
from typing import Any

import msgspec

from . import base
from .base import AdapterError, Event, GenerationParams

_HEADER = struct.Struct("!I")
MAX_FRAME_BYTES = 1 << 30
"""A frame larger than this is a protocol error (the server caps request bodies far below it)."""


PREPARER_EXITED = 3
"""The engine process's exit code when its prompt preparer died (the server restarts both)."""
ENGINE_BROKEN = 4
"""The engine process's exit code after a failed step: its pipeline cannot be trusted (the server
restarts it)."""


# --- messages: server -> engine ---


class Add(msgspec.Struct, tag=True, array_like=True):
    """Start generating for a request."""

    request_id: int
    params: GenerationParams


class ForwardedAdd(msgspec.Struct, tag="Add", array_like=True):
    """``Add`` as the engine reads it: the parameters stay encoded and go on to the preparer as they are.

    Measured: decoding a request of 20,000 messages took 33 ms of the step loop; as raw bytes, 4 ms.
    """

    request_id: int
    params: msgspec.Raw


class Cancel(msgspec.Struct, tag=True, array_like=True):
    """Stop a request and free its KV cache (a no-op if it already ended)."""

    request_id: int


class Close(msgspec.Struct, tag=True, array_like=True):
    """Finish: cancel everything and exit."""


# --- messages: engine -> server ---


class Ready(msgspec.Struct, tag=True, array_like=True):
    """The model is loaded and warmed up; ``output_format`` is how its output is parsed (found by the
    preparer, which has the chat template)."""

    output_format: base.OutputFormat = base.OutputFormat()
    inference_precision: str | None = None
    """The precision the engine's device computes in (``f32``, ``bf16``, ``f16``; ``None``: unknown, as on
    AUTO); the engine fills it in when it passes the preparer's ``Ready`` on."""


class LoadFailed(msgspec.Struct, tag=True, array_like=True):
    """The model could not be loaded; ``reason`` is one line for the operator."""

    reason: str


class Failure(msgspec.Struct, tag=True):  # a map, not an array: it shares a union with list[Event]
    """The error that ended one request, by adapter error class name and its fields."""

    error: str
    fields: dict[str, Any]


# --- messages: engine <-> its prompt preparer (the engine sends it ``Add``) ---


class Prepared(msgspec.Struct, tag=True, array_like=True):
    """A request's prompt, templated and tokenized, its completion budget, and its parameters without
    the messages (the engine never decodes those) and without the constraint, which comes lowered."""

    request_id: int
    prompt: list[int]
    max_new_tokens: int
    params: GenerationParams
    reasoning_open: bool = False
    """The prompt ends inside an open think block: the output starts as reasoning."""
    constraint: StructuredOutput | None = None
    """The request's constraint as the preparer lowered and checked it: the engine only builds it."""


# A request's output constraint, lowered once by the preparer (``worker.constraint``): exactly the
# openvino-genai objects to build, named as openvino-genai names them, each schema already turned into
# a grammar where OpenArc's compact grammar can express it. The engine only builds these objects.


class EBNF(msgspec.Struct, frozen=True, tag=True, array_like=True):
    grammar: str


class JSONSchema(msgspec.Struct, frozen=True, tag=True, array_like=True):
    schema: str


class ConstString(msgspec.Struct, frozen=True, tag=True, array_like=True):
    text: str


class Concat(msgspec.Struct, frozen=True, tag=True, array_like=True):
    elements: tuple[StructuralTag, ...]


class Union(msgspec.Struct, frozen=True, tag=True, array_like=True):
    elements: tuple[StructuralTag, ...]


class Tag(msgspec.Struct, frozen=True, tag=True, array_like=True):
    begin: str
    content: StructuralTag
    end: str


class TagsWithSeparator(msgspec.Struct, frozen=True, tag=True, array_like=True):
    tags: tuple[Tag, ...]
    separator: str
    at_least_one: bool
    stop_after_first: bool


StructuralTag = EBNF | JSONSchema | ConstString | Concat | Union | Tag | TagsWithSeparator


class StructuredOutput(msgspec.Struct, frozen=True, array_like=True):
    """An ``ov_genai.StructuredOutputConfig`` to build: exactly one field is set."""

    grammar: str | None = None
    json_schema: str | None = None
    structural_tags: StructuralTag | None = None


class Counted(msgspec.Struct, tag=True, array_like=True):
    """A ``prompt_only`` request's prompt, templated and tokenized: nothing goes to the engine."""

    request_id: int
    prompt: list[int]
    text: str


class Rejected(msgspec.Struct, tag=True, array_like=True):
    """A request whose prompt could not be prepared (too long for the context, bad template, ...)."""

    request_id: int
    failure: Failure


class Batch(msgspec.Struct, tag=True, array_like=True):
    """What the engine produced since its last batch, sent at most once per step (and at least once a
    second while it has work: the server's watchdog takes any message as a sign of progress)."""

    outcomes: dict[int, list[Event] | Failure]
    running: int
    counts: base.EngineCounts = base.EngineCounts()
    """Everything the engine has counted since it started (not since the last batch)."""


EngineInbox = ForwardedAdd | Cancel | Close
FromEngine = Ready | LoadFailed | Batch
FromPreparer = Ready | LoadFailed | Prepared | Counted | Rejected


# --- messages: server -> encoder ---


class Embed(msgspec.Struct, tag=True, array_like=True):
    """Embed ``texts`` (the texts of one or more requests, joined by the server's batcher)."""

    batch_id: int
    texts: list[str | list[int]]
    """Texts, or token arrays (decoded here with the model's tokenizer)."""


class Rerank(msgspec.Struct, tag=True, array_like=True):
    batch_id: int
    query: str
    documents: list[str]


class Shutdown(msgspec.Struct, tag=True, array_like=True):
    pass


# --- messages: encoder -> server ---


class EncoderReady(msgspec.Struct, tag=True, array_like=True):
    dimensions: int | None
    """Embedding size (``None`` for a rerank model)."""
    max_length: int | None
    inference_precision: str | None = None
    """The precision the device computes in (see ``devices.effective_precision``)."""


class Embedded(msgspec.Struct, tag=True, array_like=True):
    batch_id: int
    vectors: bytes
    """float32, row-major, one row per text."""
    tokens: list[int]
    """Tokens each text took (after truncation)."""


class Reranked(msgspec.Struct, tag=True, array_like=True):
    batch_id: int
    scores: list[tuple[int, float]]
    """Every document's (index, relevance score), best first."""
    tokens: int


class BatchFailed(msgspec.Struct, tag=True, array_like=True):
    batch_id: int
    failure: Failure


ToEncoder = Embed | Rerank | Shutdown
FromEncoder = EncoderReady | LoadFailed | Embedded | Reranked | BatchFailed


_FAILURES = {
    cls.__name__: cls
    for cls in (
        base.PromptTooLongError,
        base.InvalidConversationError,
        base.InvalidParametersError,
        base.InvalidConstraintError,
        base.EngineOverloadedError,
        base.EngineUnavailableError,
        base.ModelLoadError,
        base.GenerationFailedError,
    )
}


def failure_to_wire(error: AdapterError) -> Failure:
    """An adapter error as a message: its class name and fields (every adapter error is a dataclass)."""
    return Failure(type(error).__name__, dataclasses.asdict(error))


def failure_from_wire(failure: Failure) -> AdapterError:
    """The adapter error a ``Failure`` describes (an unknown name becomes ``GenerationFailedError``)."""
    cls = _FAILURES.get(failure.error)
    if cls is None:
        return base.GenerationFailedError(f"{failure.error}: {failure.fields}")
    return cls(**failure.fields)


class ChannelClosedError(EOFError):
    """The other end closed the channel (its process exited or closed it)."""


def _frame(encoder: msgspec.msgpack.Encoder, message: Any) -> bytes:
    body = encoder.encode(message)
    return _HEADER.pack(len(body)) + body


def _body_length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ChannelClosedError(f"frame of {length} bytes exceeds the limit: the stream is corrupt")
    return length


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of stream sockets: (server end, engine end)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


class BlockingFrames:
    """The engine process's end: blocking sends and receives of whole messages."""

    def __init__(self, sock: socket.socket, receives: Any):
        sock.setblocking(True)
        self._sock = sock
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(receives)

    def send(self, message: Any) -> None:
        """Send one message whole, blocking until the socket has taken all of it."""
        self._sock.sendall(_frame(self._encoder, message))

    def fileno(self) -> int:
        """The socket's descriptor, so that ``select`` can wait on these frames."""
        return self._sock.fileno()

    def recv(self) -> Any:
        """The next whole message; ``ChannelClosedError`` at end-of-file."""
        length = _body_length(self._read_exactly(_HEADER.size))
        return self._decoder.decode(self._read_exactly(length))

    def close(self) -> None:
        """Close this end of the channel (the other end then reads end-of-file)."""
        self._sock.close()

    def _read_exactly(self, size: int) -> bytes:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            count = self._sock.recv_into(view[got:])
            if count == 0:
                raise ChannelClosedError("the channel was closed")
            got += count
        return bytes(buffer)


class AsyncFrames:
    """The server's end, on its event loop: buffered writes that never block, whole-frame reads."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, receives: Any):
        self._reader = reader
        self._writer = writer
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(receives)

    @classmethod
    async def attach(cls, sock: socket.socket, receives: Any) -> AsyncFrames:
        """Wrap a connected socket (possibly used with ``BlockingFrames`` before) in asyncio streams."""
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        return cls(reader, writer, receives)

    def send(self, message: Any) -> None:
        """Queue a message; it goes out as the socket accepts it, whole, without blocking the loop."""
        self._writer.write(_frame(self._encoder, message))

    async def drain(self) -> None:
        """Wait until the write buffer is below its high-water mark (back-pressure for large messages)."""
        await self._writer.drain()

    async def recv(self) -> Any:
        """The next whole message; ``ChannelClosedError`` at end-of-file."""
        try:
            length = _body_length(await self._reader.readexactly(_HEADER.size))
            body = await self._reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ChannelClosedError("the engine closed the channel") from exc
        return self._decoder.decode(body)

    def close(self) -> None:
        """Close the server's end: what is still queued goes out first, without waiting for it here."""
        self._writer.close()
