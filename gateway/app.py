"""``create_app(config)``: the only place the HTTP app is wired together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from .admin import admin_router
from .config import ServerConfig
from .errors import error_response
from .registry import ModelRegistry
from .routes import ROUTES


def create_app(config: ServerConfig, registry: ModelRegistry | None = None) -> Litestar:
    """Build the app; it loads the configured models at start-up unless a loaded ``registry`` is given."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = registry or ModelRegistry(config)
        if registry is None:
            await asyncio.to_thread(owned.load_all)
        app.state.registry = owned
        app.state.config = config
        try:
            yield
        finally:
            await owned.close_all()

    def provide_registry(state: State) -> ModelRegistry:
        return state.registry

    return Litestar(
        route_handlers=[*ROUTES, admin_router],
        lifespan=[lifespan],
        dependencies={"registry": Provide(provide_registry, sync_to_thread=False)},
        exception_handlers={Exception: error_response},
        request_max_body_size=config.max_request_bytes,
    )
