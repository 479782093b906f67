"""Checks that a structured-output constraint compiles before it reaches a real engine (preparer process).

openvino-genai compiles a request's ``StructuredOutputConfig`` with xgrammar only inside
``ContinuousBatchingPipeline.step()``: ``add_request`` and ``GenerationConfig.validate()`` accept a schema
xgrammar rejects, the next step raises, and the pipeline then refuses every later step, so one client's bad
schema would end every request on the engine. The C++ check that compiles the grammar is not exposed to
Python, and xgrammar's own package needs torch. Converting a schema, regex, EBNF grammar or structural tag
into a grammar does not depend on the vocabulary, so a tiny throwaway pipeline (the "probe") compiles the
constraint first and only the probe breaks.

The probe model is a llama-architecture GGUF file written here (one layer, hidden size 64, all-zero F16
weights, a 259-token byte-level vocabulary): openvino-genai loads it in 0.3-0.6 s with no download and
no torch. It is written directly rather than with the ``gguf`` package, which is only in the
export extra and would bring requests, tqdm and PyYAML into serving installs for 24 metadata keys.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

logger = logging.getLogger(__name__)

PROBE_FILE = "grammar-probe-v1.gguf"
"""The probe model's file name in the cache directory; bump the version when its content changes."""

_MAX_REASON = 300
"""Longest reason returned: xgrammar's JSON parse errors quote the whole schema, which may be huge."""

# --- the probe model: a minimal GGUF file (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) ---

_HIDDEN, _HEADS, _KV_HEADS, _FFN = 64, 2, 1, 128
_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_EOS_ID = 2
_U32, _I32, _F32, _BOOL, _STRING, _ARRAY = 4, 5, 6, 7, 8, 9  # GGUF metadata value types
_GGML_F32, _GGML_F16 = 0, 1  # tensor types; openvino-genai's loader rejects F32 matrices, so they are F16
_ALIGNMENT = 32


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _metadata(key: str, kind: int, value: Any) -> bytes:
    head = _string(key) + struct.pack("<I", kind)
    if kind == _STRING:
        return head + _string(value)
    if kind == _ARRAY:
        item_kind, items = value
        body = b"".join(_string(item) if item_kind == _STRING else struct.pack("<i", item) for item in items)
        return head + struct.pack("<IQ", item_kind, len(items)) + body
    return head + struct.pack({_U32: "<I", _F32: "<f", _BOOL: "<?"}[kind], value)


def _byte_tokens() -> list[str]:
    """GPT-2's byte-level alphabet: each byte as one printable character, in byte order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    shifted = iter(range(0x100, 0x200))
    return [chr(byte) if byte in printable else chr(next(shifted)) for byte in range(256)]


def _tensors(vocab_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """The llama tensors of one layer, dimensions innermost first as GGUF stores them."""
    kv_width = _KV_HEADS * _HIDDEN // _HEADS
    layer = {
        "attn_norm": (_HIDDEN,),
        "ffn_norm": (_HIDDEN,),
        "attn_q": (_HIDDEN, _HIDDEN),
        "attn_k": (_HIDDEN, kv_width),
        "attn_v": (_HIDDEN, kv_width),
        "attn_output": (_HIDDEN, _HIDDEN),
        "ffn_gate": (_HIDDEN, _FFN),
        "ffn_up": (_HIDDEN, _FFN),
        "ffn_down": (_FFN, _HIDDEN),
    }
    named = [(f"blk.0.{name}.weight", dims) for name, dims in layer.items()]
    return [("token_embd.weight", (_HIDDEN, vocab_size)), ("output_norm.weight", (_HIDDEN,)), *named]


def probe_model_bytes() -> bytes:
    """The probe model's GGUF file: deterministic, about 110 KB.

    Zero weights make every logit equal, which is all a probe needs; norms are ones so nothing divides
    by zero. Tokens: three control tokens, then the 256 bytes (token id = byte + 3), no merges.
    """
    tokens = [*_SPECIAL_TOKENS, *_byte_tokens()]
    metadata = [
        ("general.architecture", _STRING, "llama"),
        ("general.name", _STRING, "openarc-grammar-probe"),
        ("llama.block_count", _U32, 1),
        ("llama.context_length", _U32, 256),
        ("llama.embedding_length", _U32, _HIDDEN),
        ("llama.feed_forward_length", _U32, _FFN),
        ("llama.attention.head_count", _U32, _HEADS),
        ("llama.attention.head_count_kv", _U32, _KV_HEADS),
        ("llama.rope.freq_base", _F32, 10000.0),
        ("llama.attention.layer_norm_rms_epsilon", _F32, 1e-5),
        ("llama.rope.dimension_count", _U32, _HIDDEN // _HEADS),
        ("llama.vocab_size", _U32, len(tokens)),
        ("general.file_type", _U32, 1),  # mostly F16
        ("tokenizer.ggml.model", _STRING, "gpt2"),
        ("tokenizer.ggml.pre", _STRING, "gpt2"),
        ("tokenizer.ggml.tokens", _ARRAY, (_STRING, tokens)),
        ("tokenizer.ggml.token_type", _ARRAY, (_I32, [3] * len(_SPECIAL_TOKENS) + [1] * 256)),
        ("tokenizer.ggml.merges", _ARRAY, (_STRING, [])),
        ("tokenizer.ggml.bos_token_id", _U32, 1),
        ("tokenizer.ggml.eos_token_id", _U32, _EOS_ID),
        ("tokenizer.ggml.add_bos_token", _BOOL, False),
    ]
    infos, blobs, offset = [], [], 0
    for name, dims in _tensors(len(tokens)):
        count = math.prod(dims)
        if len(dims) == 1:
            kind, blob = _GGML_F32, struct.pack(f"<{count}f", *[1.0] * count)
        else:
            kind, blob = _GGML_F16, bytes(2 * count)
        blob += bytes(-len(blob) % _ALIGNMENT)
        shape = struct.pack(f"<I{len(dims)}Q", len(dims), *dims)
        infos.append(_string(name) + shape + struct.pack("<IQ", kind, offset))
        blobs.append(blob)
        offset += len(blob)
    header = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(metadata))
    header += b"".join(_metadata(*item) for item in metadata) + b"".join(infos)
    header += bytes(-len(header) % _ALIGNMENT)
    return header + b"".join(blobs)


def write_probe_model(cache_dir: Path) -> Path:
    """Write the probe model into ``cache_dir`` unless an identical file is already there; return its path."""
    path = Path(cache_dir) / PROBE_FILE
    content = probe_model_bytes()
    if path.is_file() and path.read_bytes() == content:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_bytes(content)
    partial.replace(path)  # atomic: another process never loads half a file
    return path


# --- the checker -----------------------------------------------------------------------------------------

# Only to shorten the text for people: xgrammar prefixes its messages with "[hh:mm:ss] <file>.cc:<line>: "
# and OpenVINO with a line "Exception from <file>:<line>:" or "Check '<condition>' failed at <file>:<line>:".
_SOURCE_LINE = re.compile(r"^(?:Exception from|Check '.*' failed at) \S+:\d+:$")
_SOURCE_PREFIX = re.compile(
    r"^(?:\[[\d:]+\] )?\S+\.(?:cc|cpp|h|hpp):\d+: (?:Check failed: \(.*?\) is false: )?"
)


def reason_from(exc: BaseException) -> str:
    """One line for a person: the compiler's message without source paths, cut at 300 characters."""
    lines = (line.strip() for line in str(exc).splitlines())
    text = " ".join(_SOURCE_PREFIX.sub("", line) for line in lines if line and not _SOURCE_LINE.match(line))
    text = text or type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _exact_key(config: ov_genai.StructuredOutputConfig) -> tuple[str, str] | None:
    """A cache key that names the constraint exactly, or ``None`` when there is none.

    Structural tags and compound grammars have no exact text form here (their ``repr`` does not escape
    quotes, so two different tags can print alike, and a wrong cache hit would let a bad one through).
    """
    if config.structural_tags_config is not None or config.compound_grammar is not None:
        return None
    for kind in ("json_schema", "regex", "grammar"):
        text = getattr(config, kind)
        if text is not None:
            return kind, text
    return None


class GrammarChecker:
    """Compiles structured-output constraints on a probe pipeline and remembers the verdicts.

    Thread-safe (one lock). Measured on 2 cores: a nested JSON schema compiles in 2-8 ms, a remembered
    verdict costs microseconds, and a failed compile about 0.3 s, most of it the probe's rebuild (which
    makes openvino-genai print two "[ERROR] ... leaked blocks" lines to stderr: the failed request's KV
    block is never freed, and goes with the old pipeline).

    Args:
        cache_dir: Where the probe model file is written (once; later instances reuse it).
        cache_entries: How many verdicts to remember, least recently used dropped first; 0 remembers none.
        recycle_after: Build a fresh probe after this many compiles: xgrammar keeps every grammar it
            compiled until the probe's tokenizer goes (measured: about 40 KB each, without bound; a
            rebuild costs about 0.5 s); 0 never recycles.
        device: The probe's device; CPU is cheapest and compiles the same grammars.
    """

    def __init__(
        self, cache_dir: Path, *, cache_entries: int = 256, recycle_after: int = 200, device: str = "CPU"
    ) -> None:
        self._model = write_probe_model(cache_dir)
        self._device = device
        self._cache_entries = cache_entries
        self._recycle_after = recycle_after
        self._verdicts: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._lock = threading.Lock()
        self._request_id = 0
        self._compiles = 0
        """Compiles since the tokenizer was built: xgrammar's compiled grammars live as long as it does."""
        self.builds = 0
        """How many probe pipelines were built (the first, then one after each failure or recycle)."""
        self._tokenizer: Any = None
        self._pipeline: Any = None
        self._replace(fresh_tokenizer=True, why="start-up")

    @property
    def cache_size(self) -> int:
        """How many verdicts are remembered now."""
        return len(self._verdicts)

    def check(self, config: ov_genai.StructuredOutputConfig, key: str | None = None) -> str | None:
        """Compile ``config`` on the probe: ``None`` if it compiles, else a one-line reason.

        Args:
            config: The constraint exactly as it will be given to the real engine.
            key: Names ``config`` exactly for the verdict cache (say, the request's lowered constraint
                encoded as JSON). Without one, JSON schemas, regexes and grammars are keyed by their own
                text and structural tags are compiled every time.
        """
        cache_key = ("key", key) if key is not None else _exact_key(config)
        with self._lock:
            if cache_key is not None and cache_key in self._verdicts:
                self._verdicts.move_to_end(cache_key)
                return self._verdicts[cache_key]
            verdict = self._compile(config)
            if cache_key is not None and self._cache_entries > 0:
                self._verdicts[cache_key] = verdict
                while len(self._verdicts) > self._cache_entries:
                    self._verdicts.popitem(last=False)
            return verdict

    def _compile(self, config: ov_genai.StructuredOutputConfig) -> str | None:
        if self._pipeline is None:  # the last rebuild raised: try again rather than stay broken
            self._replace(fresh_tokenizer=self._tokenizer is None, why="a failed rebuild")
        generation = ov_genai.GenerationConfig()
        generation.max_new_tokens = 1
        try:
            generation.structured_output_config = config
            self._request_id += 1
            # Byte "a" as the whole prompt: input ids skip tokenization and the chat template.
            prompt = ov.Tensor(np.array([[ord("a") + len(_SPECIAL_TOKENS)]], dtype=np.int64))
            handle = self._pipeline.add_request(self._request_id, prompt, generation)
        except RuntimeError as exc:  # checked before the request is queued: the probe is unharmed
            return reason_from(exc)
        self._compiles += 1
        try:
            # One step: the prompt's prefill samples the only token, under the compiled grammar.
            while self._pipeline.has_non_finished_requests():
                self._pipeline.step()
        except RuntimeError as exc:
            # The probe refuses every step after a failed one: replace it now, so the client whose
            # constraint failed pays for the rebuild rather than the next one.
            handle.cancel()
            self._replace(fresh_tokenizer=False, why="a constraint failed to compile")
            return reason_from(exc)
        if 0 < self._recycle_after <= self._compiles:
            self._replace(fresh_tokenizer=True, why=f"{self._compiles} compiles")
        return None

    def _replace(self, *, fresh_tokenizer: bool, why: str) -> None:
        """Build a new probe pipeline, on a new tokenizer when ``fresh_tokenizer``.

        Measured: the memory xgrammar keeps per compiled grammar (about 40 KB for this vocabulary) is
        freed only with the tokenizer, while building the tokenizer is half of a probe's build time. So
        a failure keeps the tokenizer and a recycle replaces it.
        """
        started = time.perf_counter()
        self._pipeline = None  # let the old one go first: the two never need to exist together
        if fresh_tokenizer:
            self._tokenizer = None
            self._tokenizer = ov_genai.Tokenizer(str(self._model))
            self._compiles = 0
        scheduler = ov_genai.SchedulerConfig()
        scheduler.num_kv_blocks = 4  # one 32-token block per request is all a probe uses
        scheduler.max_num_batched_tokens = 64
        scheduler.max_num_seqs = 1
        scheduler.enable_prefix_caching = False
        # One inference thread: the probe runs beside a real engine and must not compete for its cores.
        # f32 whatever the CPU: with OpenVINO's bf16 default on an AMX CPU (Xeon, amx_bf16), building
        # this probe killed the process with SIGFPE (openvino 2026.4.1; f32 builds it).
        self._pipeline = ov_genai.ContinuousBatchingPipeline(
            str(self._model),
            self._tokenizer,
            scheduler,
            self._device,
            INFERENCE_NUM_THREADS=1,
            INFERENCE_PRECISION_HINT="f32",
        )
        self.builds += 1
        logger.debug("grammar probe built after %s in %.2f s", why, time.perf_counter() - started)
