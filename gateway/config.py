"""Server and per-model settings: declared once, loaded from TOML or JSON, overridden by CLI flags.

Unlike the wire schemas, config is strict: an unknown key is a typo, and typos fail at start-up with a
one-line message.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from adapters.openvino.spec import InferencePrecision

from .schemas import (
    Duration,
    MaxNgramSize,
    MinP,
    NumAssistantTokens,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
)

DEMO_MODEL_ID = "SmolLM2-135M-Instruct"
DEMO_SOURCE = "demo"
"""``source = "demo"`` names the demo model, fetched from PyPI into the model cache on first use."""


class ConfigError(Exception):
    """The configuration is invalid; the message is one actionable line."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Duration) -> float | None:
    """Seconds for a ``Duration``, or ``None`` for a negative one (forever); ``ValueError`` if unreadable."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            seconds = sign * float(body)  # a bare number is seconds ("300", "-1")
        except ValueError:
            parts = _DURATION_PART.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise ValueError(
                    f"not a duration: {value!r} (use seconds, or a form like 30s, 5m, 1h30m)"
                ) from None
            seconds = sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"not a duration: {value!r}")
    return None if seconds < 0 else seconds


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BYTE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_BYTES = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*$")


def parse_memory(value: int | str, machine_bytes: int) -> int:
    """Bytes for a memory size: a number of bytes, ``"12GB"``, ``"8GiB"``, or ``"75%"`` of the machine's
    memory (``machine_bytes``); ``ValueError`` if unreadable."""
    if isinstance(value, bool):
        raise ValueError(f"not a memory size: {value!r}")
    if isinstance(value, int):
        return value
    text = value.strip().lower()
    if text.endswith("%"):
        share = float(text[:-1])
        if not 0 < share <= 100:
            raise ValueError(f"a share of memory must be above 0 and at most 100 %: {value!r}")
        return int(machine_bytes * share / 100)
    match = _BYTES.match(text)
    if match is None or match.group(2) not in _BYTE_UNITS:
        raise ValueError(f"not a memory size: {value!r} (use bytes, or a form like 12GB, 8GiB, 75%)")
    return int(float(match.group(1)) * _BYTE_UNITS[match.group(2)])


class SchedulerSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    """Continuous-batching scheduler settings (openvino-genai ``SchedulerConfig``)."""

    max_num_seqs: Annotated[int, Meta(ge=1)] = 16
    """Sequences decoded together in one step; more raises throughput and per-token latency."""
    max_num_batched_tokens: Annotated[int, Meta(ge=1)] = 2048
    """Tokens processed in one step; long prompts are split into chunks of this size."""
    cache_size: Annotated[int, Meta(ge=0)] = 2
    """KV-cache size in GB (0 with ``num_kv_blocks`` 0 lets openvino-genai decide)."""
    num_kv_blocks: Annotated[int, Meta(ge=0)] = 0
    """KV-cache size in blocks, instead of ``cache_size``."""
    dynamic_split_fuse: bool = True
    """Mix prompt chunks and decode steps in one batch, so a long prompt does not stall other streams."""
    enable_prefix_caching: bool = True
    """Reuse the KV cache of prompt prefixes seen before (a multi-turn chat pays only for the new turn)."""


class SamplingDefaults(Struct, forbid_unknown_fields=True, kw_only=True):
    """Sampling settings for the requests that leave them out, as vLLM takes them from a model's
    ``generation_config.json``; a setting left unset here keeps OpenAI's default."""

    temperature: Temperature | None = None
    """Instead of 1.0."""
    top_p: TopP | None = None
    """Instead of 1.0."""
    top_k: TopK | None = None
    """Instead of 0 (off)."""
    min_p: MinP | None = None
    """Instead of 0.0 (off)."""
    repetition_penalty: RepetitionPenalty | None = None
    """Instead of 1.0 (off)."""


DEMO_SAMPLING = SamplingDefaults(temperature=0.2, top_p=0.9)
"""What SmolLM2's model card recommends: at OpenAI's temperature 1.0 the 135M model wanders off topic
(Open WebUI, which sends no temperature, showed it)."""


class SpeculativeSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    """Speculative decoding (openvino-genai's continuous batching): cheap guesses of the next tokens,
    checked by the model in one step, so several tokens can come out of a step. The output is the same
    as without it; only the speed changes (measured in docs/benchmarks.md)."""

    method: Literal["none", "prompt_lookup", "draft_model"] = "none"
    """``prompt_lookup`` guesses from n-grams of the prompt (helps when the answer quotes it: edits,
    extraction, RAG); ``draft_model`` from a smaller model with the same tokenizer."""
    draft_model: str | None = None
    """The draft model's source (as ``source``: an IR folder, a ``.gguf`` file or a hub id), for
    ``draft_model``."""
    draft_device: str | None = None
    """The draft model's device; the model's own when unset."""
    num_assistant_tokens: NumAssistantTokens = 5
    """Tokens guessed per step; a request may set its own (``num_assistant_tokens``)."""
    max_ngram_size: MaxNgramSize = 3
    """``prompt_lookup``: the longest n-gram matched against the prompt; a request may set its own."""


# Printable (no C0 or C1 control characters), no space at either end, and every "/"-separated part a
# real one (not "", "." or ".."): clients and proxies rewrite those in a URL, so such an id could never
# be addressed (found by fuzzing: an id "." was loaded, and then no DELETE could reach it).
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_PRINTABLE_ID = rf"^(?!(?:.*/)?\.{{1,2}}(?:/|$))(?!.*//)[^\s{_CONTROL}/]([^{_CONTROL}]*[^\s{_CONTROL}/])?$"
ModelId = Annotated[str, Meta(min_length=1, max_length=256, pattern=_PRINTABLE_ID)]
"""A model's name as clients send it: 1 to 256 printable characters, no space or ``/`` at either end, and
no ``.``, ``..`` or empty segment between slashes, so that every id can be written in a URL
(``/admin/models/{id}``) and a log."""


class ModelSpec(Struct, forbid_unknown_fields=True, kw_only=True):
    """One model served on one device."""

    id: ModelId
    """The name clients pass as ``model``."""
    source: Annotated[str, Meta(min_length=1)]
    """A folder with an OpenVINO IR, a ``.gguf`` file, a Hugging Face repo id, or ``"demo"``."""
    device: str = "CPU"
    """OpenVINO device: CPU, GPU, GPU.1, NPU, AUTO, ..."""
    properties: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)
    """OpenVINO properties for compilation (PERFORMANCE_HINT, NUM_STREAMS, KV_CACHE_PRECISION, ...). On
    CPU, ``KV_CACHE_PRECISION`` is ``f16`` unless set here (``u8`` holds twice the tokens, a little
    slower: measured in docs/benchmarks.md)."""
    inference_precision: InferencePrecision = "auto"
    """The precision OpenVINO computes activations in (its ``INFERENCE_PRECISION_HINT``; weights keep the
    precision they were exported in). ``auto`` is ``f32`` on CPU, where OpenVINO alone would pick bf16
    on CPUs with ``avx512_bf16`` or AMX, which changed answers and decoded slower (measured in
    docs/benchmarks.md: bf16 prefills up to 2x faster, so it can pay for long prompts and short
    answers), and the device's own default elsewhere (f16 on GPU and NPU). ``bf16`` and ``f16`` on a
    CPU without them run in f32; ``/v1/models`` reports what the device really computes in. For
    answers that do not depend on batching, add ``properties = { DYNAMIC_QUANTIZATION_GROUP_SIZE = 0 }``
    (exact f32 activations; 0.4-0.75x the speed on int4 and int8 weights here)."""
    scheduler: SchedulerSettings = msgspec.field(default_factory=SchedulerSettings)
    """Continuous-batching settings."""
    export: bool = False
    """Allow a transformers model (folder or hub id) to be exported to OpenVINO at load time. Slow,
    memory-hungry and naive (int8): export ahead of time with ``openarc export`` instead."""
    engine: Literal["auto", "continuous", "sequential"] = "auto"
    """``continuous`` batches many requests; ``sequential`` runs one at a time (for devices that cannot
    batch); ``auto`` picks sequential for NPU and continuous batching elsewhere."""
    max_queue: Annotated[int, Meta(ge=0)] = 64
    """Requests allowed to wait beyond ``scheduler.max_num_seqs``; past that, clients get 429."""
    chat_template: str | None = None
    """A Jinja chat template to use instead of the model's own: the template itself, or the path of a
    file holding it (as llama.cpp's ``--chat-template-file`` and vLLM's ``--chat-template``). Text
    with ``{{`` or ``{%`` is a template; anything else is a path."""
    kind: Literal["auto", "chat", "embedding", "rerank"] = "auto"
    """What the model serves: chat (``/v1/chat/completions``, ``/v1/completions``), embedding
    (``/v1/embeddings``) or rerank (``/v1/rerank``); ``auto`` reads it from the export (its manifest's
    task, else the architecture in config.json; a GGUF file is chat)."""
    batch_size: Annotated[int, Meta(ge=1)] = 32
    """Embedding and rerank models: most texts sent to the model in one call (requests that arrive while
    it is busy are joined up to this)."""
    batch_wait: Annotated[float, Meta(ge=0)] = 0.002
    """Embedding and rerank models: seconds an idle model waits for more requests to join a batch."""
    tool_parser: Literal["auto", "hermes", "llama3_json", "mistral", "none"] = "auto"
    """How tool calls are read out of the model's output: ``auto`` finds the syntax in the chat template
    (``<tool_call>`` is hermes, ``[TOOL_CALLS]`` mistral, Llama 3's JSON form llama3_json); ``none``
    leaves every output as content (like vLLM's ``--tool-call-parser``)."""
    reasoning_parser: Literal["auto", "think", "none"] = "auto"
    """``think``: text inside ``<think>...</think>`` becomes ``reasoning_content``; ``auto`` does so when
    the chat template mentions those tags; ``none`` never moves content."""
    request_timeout: Annotated[float, Meta(gt=0)] | None = 600.0
    """Seconds a request may take, queueing included; then its generation stops and the client gets
    408 (or, mid-stream, an error event). ``None`` disables the limit."""
    stall_timeout: Annotated[float, Meta(gt=0)] | None = 120.0
    """Seconds the engine may go without reporting progress while it has work before it is taken for
    stuck, stopped and restarted (it reports at least every second while busy; a single step longer
    than this, such as a huge prefill on a slow device, needs a larger value). ``None``: no watchdog."""
    sampling: SamplingDefaults = msgspec.field(default_factory=SamplingDefaults)
    """Sampling settings for requests that leave them out; the demo model gets ``temperature`` 0.2 and
    ``top_p`` 0.9 unless set here."""
    speculative: SpeculativeSettings = msgspec.field(default_factory=SpeculativeSettings)
    """Speculative decoding: off by default."""
    warm_up: bool = True
    """Run a few short generations at load (a prompt of several tokens, two sequences in one step), so
    the first users do not pay OpenVINO's first-use costs (demo model: a second distinct prompt after
    start took 0.6 s without it, 0.08 s with it); ``false`` makes the server ready about 1 s sooner and
    leaves those costs to the first requests."""
    max_restarts: Annotated[int, Meta(ge=0)] = 5
    """Engine failures in a row (each within a minute of the last start) restarted before the model is
    marked ``failed``; restarts wait 1, 2, 4, ... up to 30 seconds."""
    preload: bool = True
    """Load the model at start (before the port opens), as a one-model server wants; ``false`` loads it
    on its first request. Models found in ``models_dirs`` are not preloaded."""
    keep_alive: Duration | None = None
    """How long the model stays loaded once idle (no request running or waiting): seconds or a form like
    ``"5m"``; 0 unloads it as soon as it is idle, a negative value never. Unset: never for a preloaded
    model, the server's ``keep_alive`` for the others. A request may set its own (``keep_alive``, as
    Ollama's), which then holds for the model."""

    def __post_init__(self) -> None:
        if self.keep_alive is not None:
            parse_duration(self.keep_alive)  # a ValueError here is a validation error naming the spec
        hint = self.properties.get("INFERENCE_PRECISION_HINT")
        if hint is not None and self.inference_precision != "auto" and hint != self.inference_precision:
            # msgspec reports a ValueError raised here as a validation error of the whole spec.
            raise ValueError(
                f"inference_precision {self.inference_precision!r} and properties.INFERENCE_PRECISION_HINT "
                f"{hint!r} disagree: set one of them"
            )


class ModelAlias(Struct, forbid_unknown_fields=True, kw_only=True):
    """Another name for a model."""

    name: ModelId
    """The name clients send; a trailing ``*`` matches any ending (``claude-*``). A model's own id wins
    over an alias, and an exact alias over a pattern."""
    model: str
    """The id of a configured model or of one found in ``models_dirs``; an alias to anything else stops
    start-up."""
    listed: bool = False
    """Also list the alias in ``/v1/models`` (for a client that picks from the list)."""


class ResponseStoreSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    """Where the Responses API keeps stored responses (``store``, true by default as in OpenAI's API), so
    that ``previous_response_id`` can continue a conversation."""

    path: str | None = None
    """The SQLite file; ``<cache_dir>/responses.sqlite3`` when unset."""
    max_age_days: Annotated[float, Meta(gt=0)] = 30.0
    """Responses older than this are gone (OpenAI keeps stored responses 30 days)."""
    max_megabytes: Annotated[int, Meta(ge=1)] = 1024
    """The store's size bound; past it, the oldest responses go first."""


class ServerConfig(Struct, forbid_unknown_fields=True, kw_only=True):
    """The whole server."""

    host: str = "127.0.0.1"
    """Address to listen on."""
    port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    """Port to listen on (0 picks a free one)."""
    models: list[ModelSpec] = msgspec.field(default_factory=list)
    """Models to load at start-up; empty means the demo model."""
    cache_dir: str = "~/.cache/openarc"
    """Where the demo model, downloaded models and compiled-model blobs are kept."""
    max_request_bytes: Annotated[int, Meta(ge=1024)] = 8 * 1024 * 1024
    """Largest accepted request body; bigger bodies get 413."""
    log_level: str = "info"
    """Logging level for OpenArc and the HTTP server."""
    admin_key: str | None = None
    """When set, ``/admin`` endpoints require ``Authorization: Bearer <admin_key>`` (API keys do not open
    them); without one, ``/admin`` takes the API keys, or is open when there are none."""
    api_keys: list[str] = msgspec.field(default_factory=list)
    """Keys clients must send (``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``) on every route but
    ``/health`` and ``/ready``. Empty: no authentication. ``--api-key``, ``OPENARC_API_KEY`` and the key
    file add to these."""
    api_key_file: str | None = None
    """A file of API keys, one a line; blank lines and ``#`` comments are skipped."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object a line (timestamp, level, logger, message, request_id)."""
    log_prompts: bool = False
    """Log request messages and generated text (at debug). Off by default: prompts are private."""
    shutdown_grace: Annotated[float, Meta(ge=0)] = 30.0
    """Seconds running requests get to finish after SIGTERM; what is left then is cancelled."""
    responses: ResponseStoreSettings = msgspec.field(default_factory=ResponseStoreSettings)
    """The Responses API's store of responses."""
    aliases: list[ModelAlias] = msgspec.field(default_factory=list)
    """Other names for models, so that a client that insists on its own model names (Claude Code sends
    ``claude-...``, some tools ``gpt-4o``) reaches a local one."""
    chat_page: bool = True
    """Serve a chat page at ``/`` to try the models in a browser (``--no-chat-page`` turns it off). The
    page itself holds nothing secret and needs no key; its requests to the API send the key the user
    types into it."""
    models_dirs: list[str] | None = None
    """Folders whose models are all served, loaded on first use: every OpenVINO export (chat, embedding,
    rerank) and ``.gguf`` file in them, named by its folder or file name (a configured model with the
    same path keeps its own id). Unset: ``<cache_dir>/exports`` and ``<cache_dir>/models`` (where the
    demo model is kept); ``[]``: none."""
    keep_alive: Duration = "5m"
    """How long a model that was not preloaded stays loaded once idle (see the models' ``keep_alive``)."""
    max_loaded_memory: int | str | None = None
    """The memory loaded models may take together: bytes, a form like ``"12GB"``, or a share of the
    machine's memory (``"75%"``). A load that would pass it first unloads idle models, least recently
    used first; if that is not enough, the request waits (up to its ``request_timeout``) for a model to
    become idle, or gets 503. Each model counts for an estimate of its worst case: its files, its KV
    cache (``scheduler.cache_size``) and its processes' own overhead. Unset: no limit."""
    max_loaded_models: Annotated[int, Meta(ge=1)] | None = None
    """The most models loaded at once, enforced as ``max_loaded_memory`` is. Unset: no limit."""
    max_load_waiters: Annotated[int, Meta(ge=0)] = 64
    """Requests that may wait for room under ``max_loaded_memory`` or ``max_loaded_models``; past that,
    a request that finds no room gets 503 at once."""

    def __repr__(self) -> str:
        # Keys must never reach a log line or a traceback through a repr of the config.
        shown = msgspec.structs.replace(
            self, api_keys=["***"] * len(self.api_keys), admin_key=self.admin_key and "***"
        )
        fields = ", ".join(f"{f}={getattr(shown, f)!r}" for f in self.__struct_fields__)
        return f"ServerConfig({fields})"

    @property
    def cache_path(self) -> Path:
        """``cache_dir`` as a path, with ``~`` expanded."""
        return Path(self.cache_dir).expanduser()

    @property
    def models_paths(self) -> list[Path]:
        """``models_dirs`` as paths (their default when unset)."""
        if self.models_dirs is None:
            return [self.cache_path / "exports", self.cache_path / "models"]
        return [Path(folder).expanduser() for folder in self.models_dirs]

    def memory_budget(self) -> int | None:
        """``max_loaded_memory`` in bytes (``None``: no limit)."""
        if self.max_loaded_memory is None:
            return None
        return parse_memory(self.max_loaded_memory, machine_memory())


def machine_memory() -> int:
    """The machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def load_config(path: Path | None) -> ServerConfig:
    """Read a TOML or JSON config file (or return defaults), failing with a one-line ``ConfigError``."""
    if path is None:
        return ServerConfig()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
        return msgspec.convert(data, ServerConfig)
    except (ValueError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"invalid config file {path}: {exc}") from exc


def with_defaults(config: ServerConfig) -> ServerConfig:
    """Fill in the demo model when no model is configured, and check that model ids are unique."""
    models = [
        msgspec.structs.replace(spec, sampling=DEMO_SAMPLING)
        if spec.source == DEMO_SOURCE and spec.sampling == SamplingDefaults()
        else spec
        # With model folders named, the demo is one model among theirs: listed, loaded when asked for.
        for spec in config.models
        or [ModelSpec(id=DEMO_MODEL_ID, source=DEMO_SOURCE, preload=not config.models_dirs)]
    ]
    seen: set[str] = set()
    for spec in models:
        if spec.id in seen:
            raise ConfigError(f"model id {spec.id!r} is configured twice")
        seen.add(spec.id)
    try:
        parse_duration(config.keep_alive)
        config.memory_budget()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return msgspec.structs.replace(config, models=models)
