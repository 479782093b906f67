"""Run-time model management under ``/admin``: list, load and unload models.

Protected by ``admin_key`` when one is configured, else by the API keys (see ``auth.py``). Loading is
synchronous by default (the answer says ready or why not); ``?wait=false`` answers 202 at once and the
model shows up as ``loading`` until it is ready or failed.
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
    """Every model the server knows, with its state (loading, ready, failed) and load."""
    return AdminModelList(data=[_admin_model(entry) for entry in registry.entries()])


@post("/models")
async def load_model(request: Request, registry: ModelRegistry, wait: bool = True) -> Response[AdminModel]:
    """Load a model described like a ``[[models]]`` entry of the config file."""
    # A bad spec is a msgspec error: the app's handler maps it to a 400 naming the field (``param``).
    spec = msgspec.json.decode(await request.body(), type=ModelSpec)
    entry = await registry.add(spec, wait=wait)
    if entry.state == "failed":
        await registry.remove(spec.id)  # a refused load leaves nothing behind: the id can be reused
        raise InvalidRequestError(f"Could not load model '{spec.id}': {entry.error}", param="source")
    return Response(_admin_model(entry), status_code=200 if entry.state == "ready" else 202)


@delete("/models/{model_id:path}", status_code=200)
async def unload_model(model_id: str, registry: ModelRegistry) -> AdminModel:
    """Unload a model: new requests get 404 at once; requests still running end with an error."""
    entry = await registry.remove(model_id.lstrip("/"))
    return msgspec.structs.replace(_admin_model(entry), state="unloaded")


# No guard here: the app-wide guard in auth.py applies the admin key to every path under /admin.
admin_router = Router(path="/admin", route_handlers=[list_all_models, load_model, unload_model])
