"""Run-time model management under ``/admin``: list, load and unload models.

Protected by ``admin_key`` when one is configured, else by the API keys (see ``auth.py``). Loading a new
model is synchronous by default (the answer says ready or why not); ``?wait=false`` answers 202 at once
and the model shows up as ``loading`` until it is ready or failed. A model the server already lists is
loaded with ``POST /admin/models/{id}`` (again, if it failed) and unloaded with ``DELETE``.
"""

from __future__ import annotations

import msgspec
from litestar import Request, Response, Router, delete, get, post

from .config import ModelSpec
from .errors import InvalidRequestError
from .registry import ModelEntry, ModelRegistry
from .schemas import AdminModel, AdminModelList


def _admin_model(entry: ModelEntry) -> AdminModel:
    activity = entry.adapter.activity() if entry.adapter is not None and entry.state == "ready" else None
    return AdminModel(
        keep_alive=entry.keep_alive,
        unloads_at=entry.unloads_at(),
        memory_bytes=entry.memory,
        estimated_bytes=entry.charge or None,
        loads=entry.stats.loads,
        last_load_seconds=entry.stats.last_load_seconds,
        id=entry.spec.id,
        state=entry.state,
        source=entry.spec.source,
        device=entry.spec.device,
        error=entry.error,
        warning=entry.warning,
        in_flight=activity.in_flight if activity else 0,
        running=activity.running if activity else 0,
        restarts=entry.restarts,
        engine_pid=entry.adapter.info.pid if entry.adapter is not None else None,
        inference_precision=entry.adapter.info.inference_precision if entry.adapter is not None else None,
    )


@get("/models")
async def list_all_models(registry: ModelRegistry) -> AdminModelList:
    """Every model the server knows, with its state, load, memory and idle timer, and the budget."""
    budget = registry.budget()
    return AdminModelList(
        data=[_admin_model(entry) for entry in registry.entries()],
        memory_in_use_bytes=budget.in_use(registry.entries()),
        max_loaded_memory_bytes=budget.max_bytes,
        max_loaded_models=budget.max_models,
    )


@post("/models")
async def load_model(request: Request, registry: ModelRegistry, wait: bool = True) -> Response[AdminModel]:
    """Load a model described like a ``[[models]]`` entry of the config file."""
    # A bad spec is a msgspec error: the app's handler maps it to a 400 naming the field (``param``).
    spec = msgspec.json.decode(await request.body(), type=ModelSpec)
    entry = await registry.add(spec, wait=wait)
    if entry.state == "failed":
        reason = entry.error
        await registry.remove(spec.id)  # a refused load leaves nothing behind: the id can be reused
        raise InvalidRequestError(f"Could not load model '{spec.id}': {reason}", param="source")
    return Response(_admin_model(entry), status_code=200 if entry.state == "ready" else 202)


@post("/models/{model_id:path}", status_code=200)
async def load_listed_model(model_id: str, registry: ModelRegistry) -> Response[AdminModel]:
    """Load a model the server lists (one found in a model folder, or a configured one), now: again if it
    had failed (after its files were fixed). 200 once ready; 400 with the reason if it cannot load."""
    entry = await registry.load(model_id.lstrip("/"))
    if entry.state != "ready":
        raise InvalidRequestError(f"Could not load model '{entry.spec.id}': {entry.error}", param="model")
    return Response(_admin_model(entry), status_code=200)


@delete("/models/{model_id:path}", status_code=200)
async def unload_model(model_id: str, registry: ModelRegistry) -> AdminModel:
    """Unload a model; requests still running end with an error. A model loaded through ``POST
    /admin/models`` is forgotten (new requests get 404); one the server lists stays listed, unloaded,
    and loads again on its next request."""
    entry = await registry.remove(model_id.lstrip("/"))
    return msgspec.structs.replace(_admin_model(entry), state="unloaded")


# No guard here: the app-wide guard in auth.py applies the admin key to every path under /admin.
admin_router = Router(
    path="/admin", route_handlers=[list_all_models, load_model, load_listed_model, unload_model]
)
