"""``create_app(config)``: the only place the HTTP app is wired together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from . import __version__
from .admin import admin_router
from .auth import Authenticator
from .config import ServerConfig
from .dialects.messages.routes import ROUTES as MESSAGES_ROUTES
from .dialects.responses.routes import ROUTES as RESPONSES_ROUTES
from .dialects.tokenize import ROUTES as TOKENIZE_ROUTES
from .errors import error_response
from .metrics import Metrics, metrics_endpoint
from .openapi import describe
from .registry import ModelRegistry
from .request_ids import add_request_id_header, request_id_middleware
from .response_store import ResponseStore, SQLiteResponseStore
from .routes import ROUTES


def create_app(config: ServerConfig, registry: ModelRegistry | None = None) -> Litestar:
    """Build the app; it loads the configured models at start-up unless a loaded ``registry`` is given."""
    models = registry or ModelRegistry(config)
    metrics = Metrics(models)
    authenticator = Authenticator(config)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if registry is None:
            await asyncio.to_thread(models.load_all)
        app.state.registry = models
        settings = config.responses
        app.state.responses = SQLiteResponseStore(
            Path(settings.path).expanduser() if settings.path else config.cache_path / "responses.sqlite3",
            max_age_seconds=settings.max_age_days * 86400,
            max_bytes=settings.max_megabytes * 1024 * 1024,
        )
        await models.start()  # watch the engines from now on: a dead or stuck one is restarted
        try:
            yield
        finally:
            await models.close_all()
            await app.state.responses.close()

    def provide_registry(state: State) -> ModelRegistry:
        return state.registry

    def provide_responses(state: State) -> ResponseStore:
        return state.responses

    app = Litestar(
        route_handlers=[
            *ROUTES,
            *RESPONSES_ROUTES,
            *MESSAGES_ROUTES,
            *TOKENIZE_ROUTES,
            admin_router,
            metrics_endpoint,
        ],
        lifespan=[lifespan],
        dependencies={
            "registry": Provide(provide_registry, sync_to_thread=False),
            "responses": Provide(provide_responses, sync_to_thread=False),
        },
        exception_handlers={Exception: error_response},
        request_max_body_size=config.max_request_bytes,
        guards=[authenticator],
        middleware=[request_id_middleware, metrics.middleware],
        # Hooks, not middleware: Litestar answers unrouted requests (404/405) without route middleware.
        before_send=[add_request_id_header, metrics.count_response],
        state=State({"config": config, "metrics": metrics}),
        openapi_config=OpenAPIConfig(title="OpenArc", version=__version__),
        # Logging is set up once by the CLI (logs.py); Litestar's default config would replace the root
        # logger's handlers and drop the request ids and the JSON format.
        logging_config=None,
    )
    # Built now, after every route is registered (adding a route would make Litestar rebuild it).
    describe(app.openapi_schema, lambda path: authenticator.keys_for(path) is not None)
    return app
