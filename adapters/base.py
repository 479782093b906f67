"""The adapter contract: what the gateway asks of a backend, with no HTTP and no OpenVINO in it.

An adapter serves one model on one device. It has exactly one generation method, ``stream``, which
yields backend-neutral events; a non-streaming answer is collected from the same events by the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

FinishReason = Literal["stop", "length", "tool_calls"]
ModelKind = Literal["chat", "embedding", "rerank"]


class ToolCall(msgspec.Struct, frozen=True):
    """A function call an assistant turn made, as chat templates expect it."""

    id: str
    name: str
    arguments: Any
    """The decoded arguments (OpenAI sends a JSON string; templates render an object, as vLLM passes it)."""


class ChatMessage(msgspec.Struct, frozen=True):
    """One chat turn, already flattened to text, as the model's chat template expects it.

    A Struct rather than a dataclass: 20,000 of them are built on the event loop for one request, and
    a frozen dataclass took 50-90 ms for that.
    """

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    """Calls made by an assistant turn."""
    tool_call_id: str | None = None
    """For a ``tool`` turn: the call it answers."""


# --- output constraints: what the engine's structured-output support must enforce -------------------


class JsonConstraint(msgspec.Struct, frozen=True, tag=True):
    """The output is ``prefix`` followed by one JSON document valid against ``schema`` (JSON text)."""

    schema: str
    prefix: str = ""


class TaggedCall(msgspec.Struct, frozen=True):
    """One tool the model may call in a ``TaggedCallsConstraint``: ``begin``, JSON valid against
    ``schema`` (JSON text), then ``end``."""

    begin: str
    schema: str
    end: str


class TaggedCallsConstraint(msgspec.Struct, frozen=True, tag=True):
    """The output is one or more tagged calls (only one when ``single``), joined by ``separator``."""

    calls: tuple[TaggedCall, ...]
    separator: str = "\n"
    single: bool = False


class AnyOfConstraint(msgspec.Struct, frozen=True, tag=True):
    """The output is exactly one of ``options`` (a JSON answer or one tool call, say); a
    ``TaggedCallsConstraint`` option allows one call whatever its ``single``."""

    options: tuple[JsonConstraint | TaggedCallsConstraint, ...]


Constraint = JsonConstraint | TaggedCallsConstraint | AnyOfConstraint


class ReasoningFormat(msgspec.Struct, frozen=True):
    """How a model marks its reasoning, when it has any (``<think>...</think>`` style)."""

    open_tag: str = "<think>"
    close_tag: str = "</think>"


class OutputFormat(msgspec.Struct, frozen=True):
    """How a model's raw text is split into content, reasoning and tool calls (found at load)."""

    tool_format: str | None = None
    """The tool-call syntax the model writes (``hermes``, ``llama3_json``, ``mistral``), if any."""
    reasoning: ReasoningFormat | None = None


@dataclass(frozen=True)
class GenerationParams:
    """Everything a backend needs to run one chat completion, independent of any wire format.

    ``None`` means "the backend's default" for every optional sampling field.
    """

    messages: tuple[ChatMessage, ...]
    max_tokens: int | None = None
    """Upper bound on generated tokens; ``None`` lets the request use the rest of the context window."""
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 disables top-k filtering."""
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    logprobs: bool = False
    """Report each generated token's log probability (``TokenLogprobs`` events)."""
    tools: tuple[dict[str, Any], ...] = ()
    """Tool definitions for the chat template, in OpenAI's shape (``{"type": "function", "function":
    {...}}``)."""
    tool_format: str | None = None
    """The tool-call syntax to parse out of the output (see ``OutputFormat``); ``None``: no parsing."""
    constraint: Constraint | None = None
    """What the output must look like (a JSON schema, forced tool calls), enforced while generating."""
    constraint_param: str = "response_format"
    """The request field the constraint came from, named in the error if it cannot be compiled."""
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra variables for the chat template (``enable_thinking``, ...), already checked by the gateway."""
    prompt: str | None = None
    """Raw prompt text (``/v1/completions``): tokenized as it is, with no chat template and no messages."""
    num_assistant_tokens: int | None = None
    """Speculative decoding: tokens guessed per step (set exactly when the model decodes speculatively)."""
    max_ngram_size: int | None = None
    """Prompt-lookup decoding: the longest n-gram matched against the prompt."""
    fit_to_context: bool = False
    """``max_tokens`` is a cap, not a demand: a completion that would not fit the context window stops at
    its end instead of being refused (Anthropic's clients send ``max_tokens`` 32000 to every model)."""
    decode_ids: tuple[int, ...] | None = None
    """With ``prompt_only``: detokenize these ids (``/detokenize``) instead of preparing a prompt; the
    ``PromptTokens`` event carries their text."""
    prompt_only: bool = False
    """Template and tokenize the prompt, and generate nothing: the events are ``PromptTokens`` and a
    ``Usage`` with no completion tokens (``/tokenize``, Anthropic's ``count_tokens``). The context window
    is not checked: a prompt too long to answer is still counted."""


@dataclass(frozen=True)
class ModelInfo:
    """What the gateway may tell clients about a loaded model."""

    id: str
    device: str
    context_length: int | None
    created: int
    owned_by: str = "openarc"
    source: str = ""
    pid: int | None = None
    """The process serving the model, where it has one of its own."""
    pids: tuple[int, ...] = ()
    """Every process the model runs in (its memory is theirs)."""
    output_format: OutputFormat = OutputFormat()
    """How the model writes tool calls and reasoning (from its chat template or the config)."""
    kind: ModelKind = "chat"
    dimensions: int | None = None
    """An embedding model's vector size."""
    inference_precision: str | None = None
    """The precision the device computes activations in (``f32``, ``bf16``, ``f16``), as OpenVINO reports
    it; ``None`` where the device decides per model (AUTO)."""


# Events cross the engine channel as MessagePack: tagged msgspec Structs, so a list of them decodes
# back to the right classes (see adapters/channel.py).


class TextDelta(msgspec.Struct, frozen=True, tag=True, array_like=True):
    """New text for choice ``index``; ``text`` is never a partial UTF-8 character."""

    index: int
    text: str


class ReasoningDelta(msgspec.Struct, frozen=True, tag=True, array_like=True):
    """New reasoning text (what a reasoning model writes inside its think block) for choice ``index``."""

    index: int
    text: str


class ToolCallDelta(msgspec.Struct, frozen=True, tag=True, array_like=True):
    """A piece of tool call ``call`` (0-based within choice ``index``): the first piece of a call names
    the function; later pieces carry only more of its JSON arguments text."""

    index: int
    call: int
    name: str | None
    arguments: str


class TokenLogprobs(msgspec.Struct, frozen=True, tag=True, array_like=True):
    """The tokens choice ``index`` generated since the last such event, each with its log probability
    (sent only when the request asked for logprobs, before the text those tokens make)."""

    index: int
    tokens: list[str]
    logprobs: list[float]


class Finished(msgspec.Struct, frozen=True, tag=True, array_like=True):
    """Choice ``index`` is complete."""

    index: int
    reason: FinishReason
    stop: str | None = None
    """The stop string that ended the choice (Anthropic's ``stop_sequence``), when one did."""


class Usage(msgspec.Struct, frozen=True, tag=True, array_like=True):
    """Token accounting for the whole request; always the last event of a successful stream."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None
    """Prompt tokens served from the prefix cache; ``None`` when the backend cannot tell."""

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together (OpenAI's ``total_tokens``)."""
        return self.prompt_tokens + self.completion_tokens


class PromptTokens(msgspec.Struct, frozen=True, tag=True, array_like=True):
    """The prompt as the model reads it (``prompt_only`` requests): its token ids and their text."""

    ids: list[int]
    text: str


Event = TextDelta | ReasoningDelta | ToolCallDelta | TokenLogprobs | Finished | PromptTokens | Usage


class EngineCounts(msgspec.Struct, frozen=True, array_like=True):
    """What an engine has done since it started, counted as it steps (so a request cancelled mid-way
    counts the tokens it got), in the engine's own process."""

    generated_tokens: int = 0
    """Tokens generated, for every request, finished or not."""
    speculative_steps: int = 0
    """Steps of a speculative-decoding model that gave a sequence new tokens: each checks one round of
    guessed tokens and gives one token of its own plus the guesses it accepted."""
    accepted_tokens: int = 0
    """Guessed tokens accepted in those steps (mean tokens a step: ``1 + accepted / steps``)."""

    def __add__(self, other: EngineCounts) -> EngineCounts:
        mine, theirs = msgspec.structs.astuple(self), msgspec.structs.astuple(other)
        return EngineCounts(*(a + b for a, b in zip(mine, theirs, strict=True)))


@dataclass(frozen=True)
class Activity:
    """A snapshot of an adapter's load, for health checks and tests."""

    in_flight: int
    """Requests accepted and not yet finished or released (running or waiting)."""
    running: int
    """Requests the engine is generating for right now."""
    counts: EngineCounts = EngineCounts()
    """What its engine has done since it started (zeros for a backend that does not count)."""


class Adapter(Protocol):
    """A backend serving one model on one device."""

    info: ModelInfo

    def stream(self, params: GenerationParams) -> AsyncIterator[Event]:
        """Generate for ``params``; raise an ``AdapterError`` before the first event if it cannot start.

        Closing the iterator early (client gone) must stop the generation and free its resources.
        """
        ...

    def activity(self) -> Activity:
        """How busy the adapter is right now."""
        ...

    async def start(self, on_failure: Callable[[str], None]) -> None:
        """Begin serving on the running event loop (idempotent).

        ``on_failure(reason)`` is called once if the backend dies or stalls; by then every request it
        held has ended with ``EngineUnavailableError`` and the adapter serves no more.
        """
        ...

    async def close(self, reason: str) -> None:
        """End every request still running with ``EngineUnavailableError(reason)``; release the model."""
        ...


# --- errors: backend-neutral; the gateway maps each class to one HTTP error in one table ---


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type name): enough for a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class AdapterError(Exception):
    """Base of every failure an adapter reports on purpose."""


@dataclass
class ReasonedError(AdapterError):
    """An adapter error whose message is its ``reason``: one line, written for the client or the log."""

    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass
class PromptTooLongError(AdapterError):
    """The prompt plus the requested completion cannot fit in the model's context window."""

    prompt_tokens: int
    requested_tokens: int
    context_length: int
    counted_in_pieces: bool = False
    """The tokenizer cut the prompt at the context length, so ``prompt_tokens`` was counted piece by
    piece: right to within a few tokens, not exact."""

    def __str__(self) -> str:
        about = "about " if self.counted_in_pieces else ""
        return (
            f"prompt of {about}{self.prompt_tokens} tokens plus {self.requested_tokens} completion tokens "
            f"exceeds the context window of {self.context_length}"
        )


@dataclass
class InvalidConversationError(ReasonedError):
    """The model's chat template rejected the messages (for example, a role it does not know)."""


@dataclass
class InvalidParametersError(ReasonedError):
    """The backend refused the request's sampling settings (for example a value that is positive as a
    double but 0 as the engine's float32)."""


@dataclass
class InvalidConstraintError(ReasonedError):
    """The requested output constraint (a JSON schema, a tool's parameters) cannot be compiled into a
    grammar; ``param`` names the request field it came from."""

    param: str


@dataclass
class EngineOverloadedError(AdapterError):
    """The engine's queue is full; the caller should retry after ``retry_after`` seconds."""

    retry_after: int = 1

    def __str__(self) -> str:
        return "the model's request queue is full"


@dataclass
class ModelLoadError(ReasonedError):
    """A model could not be loaded; ``reason`` is a one-line, actionable explanation."""

    transient: bool = False
    """The loading process died (killed, out of memory) rather than refusing the model's files: trying
    again may work."""


@dataclass
class EngineUnavailableError(ReasonedError):
    """The engine stopped serving a request it had accepted: it exited or stalled (and is being
    restarted), or the model was unloaded, or the server is shutting down. ``reason`` says which."""

    retry_after: int | None = None


RESTART_RETRY_AFTER = 2
"""``Retry-After`` (seconds) sent with ``EngineUnavailableError`` to requests cut off by a child process
failure (engine, preparer, encoder): the registry is restarting it, the first attempt after a second."""


@dataclass
class GenerationFailedError(AdapterError):
    """The backend failed while generating; details are logged, never sent to clients."""

    detail: str = field(default="")

    def __str__(self) -> str:
        return self.detail or "generation failed"
