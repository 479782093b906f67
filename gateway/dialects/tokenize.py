"""``/tokenize`` and ``/detokenize``, in vLLM's shape (llama.cpp's server and OVMS have the same idea).

Agents budget their context with these. A chat is templated and tokenized exactly as a generation
would be, tools and template switches included (it goes through ``chat.to_params`` and the model's
prompt preparer), so the count is the one the model would see.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, post
from msgspec import Meta, Struct

from adapters.base import GenerationParams

from ..encoders import require_kind
from ..errors import InvalidRequestError, UnsupportedParameterError
from ..generation import count_prompt
from ..json_body import json_body
from ..registry import ModelRegistry
from ..schemas import (
    MAX_INT32,
    ChatCompletionMessageParam,
    ChatCompletionRequest,
    ChatCompletionTool,
    decode_request,
)
from .chat import to_params


class TokenizeRequest(Struct, kw_only=True):
    """A prompt (tokenized as ``/v1/completions`` would) or chat messages (as ``/v1/chat/completions``)."""

    model: str
    prompt: str | None = None
    messages: list[ChatCompletionMessageParam] | None = None
    tools: list[ChatCompletionTool] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    add_generation_prompt: bool = True
    """Accepted; the prompt always ends as generation's does, with the assistant's turn opened."""
    add_special_tokens: bool = True
    return_token_strs: bool = False
    """Refused when true: each token's text would take a tokenizer call per token."""


class TokenizeResponse(Struct, kw_only=True):
    """The prompt's token ids and their count, with the model's context length (``null`` when unknown)."""

    count: int
    max_model_len: int | None
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(Struct, kw_only=True):
    """Token ids to turn back into text with the model's tokenizer."""

    model: str
    tokens: list[Annotated[int, Meta(ge=0, le=MAX_INT32)]]


class DetokenizeResponse(Struct, kw_only=True):
    """The text the token ids make, special tokens included."""

    prompt: str


_tokenize_decoder = msgspec.json.Decoder(TokenizeRequest)
_detokenize_decoder = msgspec.json.Decoder(DetokenizeRequest)


@post(["/tokenize", "/v1/tokenize"], status_code=200)
async def tokenize(request: Request, registry: ModelRegistry) -> TokenizeResponse:
    """Tokenize a prompt, or chat messages with the model's chat template and tools, as generation would."""
    body: TokenizeRequest = decode_request(_tokenize_decoder, await json_body(request))
    async with registry.use(body.model) as served:
        adapter = served.adapter
        require_kind(adapter.info, "chat")
        if body.return_token_strs:
            raise UnsupportedParameterError("return_token_strs is not supported", param="return_token_strs")
        if (body.prompt is None) == (body.messages is None):
            raise InvalidRequestError("send either prompt or messages", param="prompt")
        if body.messages is not None:
            chat = ChatCompletionRequest(
                messages=body.messages,
                model=body.model,
                tools=body.tools,
                chat_template_kwargs=body.chat_template_kwargs,
            )
            params = to_params(chat, adapter.info.output_format, served.spec)
        else:
            params = GenerationParams(messages=(), prompt=body.prompt)
        counted = await count_prompt(adapter, params, served.timeout)
        return TokenizeResponse(
            count=len(counted.ids), max_model_len=adapter.info.context_length, tokens=counted.ids
        )


@post(["/detokenize", "/v1/detokenize"], status_code=200)
async def detokenize(request: Request, registry: ModelRegistry) -> DetokenizeResponse:
    """Turn token ids back into text with the model's tokenizer (special tokens kept)."""
    body: DetokenizeRequest = decode_request(_detokenize_decoder, await json_body(request))
    async with registry.use(body.model) as served:
        adapter = served.adapter
        require_kind(adapter.info, "chat")
        params = GenerationParams(messages=(), decode_ids=tuple(body.tokens))
        return DetokenizeResponse(prompt=(await count_prompt(adapter, params, served.timeout)).text)


ROUTES = [tokenize, detokenize]
