"""GGUF to a transformers folder that exports faithfully: weights through transformers, tokenizer checked.

transformers reads GGUF weights well, but the tokenizer it builds from the demo GGUF is wrong (measured
with transformers 5.5: an extra ``<|im_start|>`` on every encode, and the wrong EOS). So the tokenizer
is checked against the GGUF's own tokenizer, and rebuilt from the GGUF vocabulary and merges when the
two disagree. Needs the ``export`` extra (torch, transformers, gguf); imported lazily by the export.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TOKENIZER_SAMPLES = [
    "Hello world",
    "What is the capital of France?",
    "  leading spaces and\ttabs\nand newlines\n\n",
    "héllo wörld, ünïcödé",
    "日本語のテキストと中文",
    "emoji 🎉🚀 and symbols ©®™",
    "Numbers 1234567890 and 3.14159, x^2 + y^2 = z^2",
    "def add(a, b):\n    return a + b  # code",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "MixedCASE words, CamelCase and snake_case_names",
]
# GGUF token types that are special tokens (llama.cpp: 3 = control, 4 = user defined).
_SPECIAL_TOKEN_TYPES = (3, 4)


Encode = Callable[[str, bool], list[int]]
"""Encode text to token ids, with or without the tokenizer's own special tokens (BOS and the like)."""


def tokenizer_mismatches(encode: Encode, reference: Encode) -> list[str]:
    """The sample strings two tokenizers encode differently, with or without special tokens."""
    return [
        text
        for text in TOKENIZER_SAMPLES
        if any(encode(text, special) != reference(text, special) for special in (False, True))
    ]


def hf_encoder(tokenizer: Any) -> Encode:
    """``Encode`` for a transformers tokenizer."""
    return lambda text, special: tokenizer.encode(text, add_special_tokens=special)


def openvino_encoder(tokenizer: Any) -> Encode:
    """``Encode`` for an ``openvino_genai.Tokenizer``."""
    return lambda text, special: tokenizer.encode(text, add_special_tokens=special).input_ids.data[0].tolist()


def gguf_to_transformers(gguf_path: Path, output: Path, reference: Encode) -> list[str]:
    """Write a transformers model folder for ``gguf_path``; returns notes on what was repaired.

    ``reference`` encodes text as the GGUF's own tokenizer does.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("reading GGUF weights with transformers (dequantized to float32)")
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    notes = []
    wrong = tokenizer_mismatches(hf_encoder(tokenizer), reference)
    if wrong:
        notes.append(
            f"transformers' tokenizer for this GGUF encoded {len(wrong)} of {len(TOKENIZER_SAMPLES)} samples "
            "differently from the GGUF's own; rebuilt it from the GGUF vocabulary and merges"
        )
        logger.warning(notes[-1])
        tokenizer = rebuild_tokenizer(gguf_path)
        still_wrong = tokenizer_mismatches(hf_encoder(tokenizer), reference)
        if still_wrong:
            raise ValueError(f"the rebuilt tokenizer still differs from the GGUF's own on {still_wrong[0]!r}")
    # Generation must stop where the GGUF's chat format ends a turn.
    for config in (model.config, model.generation_config):
        config.eos_token_id = tokenizer.eos_token_id
        config.bos_token_id = tokenizer.bos_token_id
        config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return notes


def rebuild_tokenizer(gguf_path: Path) -> Any:
    """A fast tokenizer from the GGUF's byte-level BPE vocabulary, merges, specials and chat template."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    fields = GGUFReader(str(gguf_path)).fields

    def read(key: str, default: Any = None) -> Any:
        return fields[key].contents() if key in fields else default

    if read("tokenizer.ggml.model") != "gpt2":
        raise ValueError(
            f"only byte-level BPE GGUF tokenizers can be rebuilt, not {read('tokenizer.ggml.model')!r}"
        )
    tokens: list[str] = read("tokenizer.ggml.tokens")
    merges = [tuple(merge.split(" ", 1)) for merge in read("tokenizer.ggml.merges")]
    bpe = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    # llama.cpp's "smollm" pre-tokenizer splits digits one by one before the GPT-2 pattern.
    if read("tokenizer.ggml.pre") == "smollm":
        bpe.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        bpe.pre_tokenizer = byte_level
    bpe.decoder = decoders.ByteLevel()
    types = read("tokenizer.ggml.token_type")
    bpe.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, kind in zip(tokens, types, strict=True)
            if kind in _SPECIAL_TOKEN_TYPES
        ]
    )

    def token(key: str) -> str | None:
        index = read(key)
        return tokens[int(index)] if index is not None else None

    architecture = read("general.architecture", "llama")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=token("tokenizer.ggml.bos_token_id"),
        eos_token=token("tokenizer.ggml.eos_token_id"),
        unk_token=token("tokenizer.ggml.unknown_token_id"),
        pad_token=token("tokenizer.ggml.padding_token_id"),
        clean_up_tokenization_spaces=False,
        model_max_length=int(read(f"{architecture}.context_length", 8192)),
    )
    tokenizer.chat_template = read("tokenizer.chat_template")
    return tokenizer
