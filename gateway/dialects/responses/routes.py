"""The Responses API's routes: create (streamed or not), retrieve, delete, and a response's input items."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import Parameter
from litestar.response import Stream

from ...auth import presented_keys
from ...encoders import require_kind
from ...errors import InvalidRequestError, NotFoundError
from ...generation import start_generation, unless_disconnected
from ...json_body import json_body
from ...registry import ModelRegistry
from ...response_store import ResponseStore, StoredResponse, owner_of
from ...sse import HEADERS, TypedEvent, typed_events
from ..chat import to_params
from .events import ResponseEvents, blank_response, conversation_after, new_response_id
from .request import decode_conversation, input_items, namespaces, to_chat_request
from .wire import InputItem, ResponseDeleted, ResponseInputItemList, decode_response_request
from .wire import Response as ResponseObject

_encoder = msgspec.json.Encoder()


def _owner(request: Request) -> str | None:
    """Whose responses these are: the key's hash when the server has keys (each key sees its own)."""
    if not request.app.state.config.api_keys:
        return None
    keys = presented_keys(request)
    return owner_of(keys[0]) if keys else None


async def _stored(
    store: ResponseStore, response_id: str, owner: str | None, param: str | None
) -> StoredResponse:
    record = await store.get(response_id, owner)
    if record is None:
        raise NotFoundError(f"Response with id '{response_id}' not found.", param=param)
    return record


@post(["/v1/responses", "/responses"], status_code=200)
async def create_response(
    request: Request, registry: ModelRegistry, responses: ResponseStore
) -> Response[ResponseObject] | Stream:
    """Create a model response (OpenAI's Responses API), streamed as typed events when ``stream`` is true."""
    body = decode_response_request(await json_body(request))
    async with registry.use(body.model) as served:
        adapter = served.adapter
        require_kind(adapter.info, "chat")
        owner = _owner(request)
        history = []
        if body.previous_response_id is not None:
            previous = await _stored(responses, body.previous_response_id, owner, "previous_response_id")
            history = decode_conversation(previous.conversation)
        items = input_items(body)
        chat = to_chat_request(body, items, history)
        params = to_params(chat, adapter.info.output_format, served.spec)
        generation = await start_generation(adapter, params, served.timeout)
        store = body.store is not False
        response = blank_response(new_response_id(), body, generation.model, store)
        builder = ResponseEvents(response, generation, namespaces(body.tools))

        async def save() -> None:
            if store:
                record = StoredResponse(
                    id=builder.response.id,
                    created_at=time.time(),
                    owner=owner,
                    model=generation.model,
                    previous_response_id=body.previous_response_id,
                    input_items=_encoder.encode(_with_ids(items)),
                    output=_encoder.encode(builder.response),
                    conversation=_encoder.encode(conversation_after(chat, builder.response)),
                )
                await responses.put(record)

        events = _saved_before_the_last(builder.events(), save)
        if body.stream:
            return Stream(
                typed_events(events, builder.error_event), media_type="text/event-stream", headers=HEADERS
            )

        async def complete() -> ResponseObject:
            async for _ in events:
                pass
            return builder.response

        return Response(await unless_disconnected(request, complete()))


async def _saved_before_the_last(events: AsyncIterator[TypedEvent], save: Any) -> AsyncIterator[TypedEvent]:
    """The events, the response stored before the final one goes out: a client that continues from it
    the moment it sees ``response.completed`` finds it."""
    async for kind, event in events:
        if kind in ("response.completed", "response.incomplete"):
            await save()
        yield kind, event


def _with_ids(items: list[InputItem]) -> list[dict[str, Any]]:
    """The input items as ``input_items`` lists them: each with an id (OpenAI gives ids to items that
    came without one)."""
    listed = []
    for item in items:
        data = msgspec.to_builtins(item)
        data.setdefault("id", f"{data.get('type', 'item')[:3]}_{uuid.uuid4().hex}")
        if data.get("type") == "message" and isinstance(data.get("content"), str):
            # A string content is listed as the part OpenAI makes of it.
            data["content"] = [{"type": "input_text", "text": data["content"]}]
        listed.append(data)
    return listed


@get(["/v1/responses/{response_id:str}", "/responses/{response_id:str}"])
async def retrieve_response(request: Request, response_id: str, responses: ResponseStore) -> Response[bytes]:
    """A stored response, as it was returned."""
    record = await _stored(responses, response_id, _owner(request), None)
    return Response(record.output, media_type="application/json")


@delete(["/v1/responses/{response_id:str}", "/responses/{response_id:str}"], status_code=200)
async def delete_response(request: Request, response_id: str, responses: ResponseStore) -> ResponseDeleted:
    """Delete a stored response; continuing from it is then a 404."""
    if not await responses.delete(response_id, _owner(request)):
        raise NotFoundError(f"Response with id '{response_id}' not found.")
    return ResponseDeleted(id=response_id)


@get(["/v1/responses/{response_id:str}/input_items", "/responses/{response_id:str}/input_items"])
async def list_input_items(
    request: Request,
    response_id: str,
    responses: ResponseStore,
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
    after: str | None = None,
    before: str | None = None,
) -> ResponseInputItemList:
    """The input items a stored response was made from (its own, not those of the responses before it),
    a page at a time as OpenAI lists them: newest first by default, ``after`` and ``before`` item ids as
    cursors."""
    record = await _stored(responses, response_id, _owner(request), None)
    items: list[dict[str, Any]] = msgspec.json.decode(record.input_items)
    if order == "desc":
        items.reverse()
    ids = [item.get("id") for item in items]
    for cursor, param in ((after, "after"), (before, "before")):
        if cursor is not None and cursor not in ids:
            raise InvalidRequestError(f"No input item with id '{cursor}' in this response.", param=param)
    start = ids.index(after) + 1 if after is not None else 0
    end = ids.index(before) if before is not None else len(items)
    page = items[start:end][:limit]
    return ResponseInputItemList(
        data=page,
        first_id=page[0]["id"] if page else None,
        last_id=page[-1]["id"] if page else None,
        has_more=end - start > limit,
    )


ROUTES = [create_response, retrieve_response, delete_response, list_input_items]
