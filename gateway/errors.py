"""One error hierarchy, one table from adapter failures to it, and the handlers that render OpenAI errors.

Every error a client sees is ``{"error": {"message", "type", "param", "code"}}``. Routes raise; they
never build error bodies. A 500 never carries exception text: the traceback goes to the log.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from adapters.base import (
    AdapterError,
    EngineOverloadedError,
    EngineUnavailableError,
    GenerationFailedError,
    InvalidConstraintError,
    InvalidConversationError,
    InvalidParametersError,
    ModelLoadError,
    PromptTooLongError,
)

from .schemas import ErrorBody, ErrorResponse, ModelState

logger = logging.getLogger(__name__)


class GatewayError(Exception):
    """Base of every error the gateway sends; subclasses fix status, type and code."""

    status_code: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None

    def __init__(self, message: str, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}

    def body(self) -> ErrorResponse:
        """The error as OpenAI's JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return ErrorResponse(
            error=ErrorBody(message=self.message, type=self.type, param=self.param, code=self.code)
        )


class InvalidRequestError(GatewayError):
    """400: the request is malformed or asks for something invalid."""

    status_code = 400
    type = "invalid_request_error"


class UnsupportedParameterError(InvalidRequestError):
    """400: a parameter OpenArc does not support (or not with this value)."""

    code = "unsupported_parameter"


class ContextLengthExceededError(InvalidRequestError):
    """400: the prompt and the completion asked for do not fit the model's context window."""

    code = "context_length_exceeded"


class NotFoundError(GatewayError):
    """404: no such route or resource (a stored response; the chat page when it is turned off)."""

    status_code = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    """404: no model is served under the requested id."""

    code = "model_not_found"

    def __init__(self, model: str):
        super().__init__(f"The model '{model}' does not exist", param="model")


class ModelNotReadyError(GatewayError):
    """503: the model is loading or restarting (retry in 5 seconds), or it failed to load."""

    status_code = 503
    type = "server_error"
    code = "model_not_ready"

    def __init__(self, model: str, state: ModelState, reason: str | None = None):
        if state == "loading":
            super().__init__(f"The model '{model}' is loading; retry shortly.", "model", {"Retry-After": "5"})
        elif state == "restarting":
            super().__init__(
                f"The model '{model}' is restarting after an engine failure ({reason}); retry shortly.",
                "model",
                {"Retry-After": "5"},
            )
        else:
            super().__init__(f"The model '{model}' failed to load: {reason}", "model")


class ModelLoadFailedError(GatewayError):
    """400: the model's files cannot be loaded (corrupt, unsupported); it stays ``failed`` until its files
    change or an operator loads it again."""

    status_code = 400
    type = "invalid_request_error"
    code = "model_load_failed"

    def __init__(self, model: str, reason: str | None):
        super().__init__(f"The model '{model}' cannot be loaded: {reason}", "model")


class MemoryBudgetError(GatewayError):
    """503: loading the model would pass ``max_loaded_memory`` or ``max_loaded_models``, and no loaded
    model became idle in time to make room."""

    status_code = 503
    type = "server_error"
    code = "model_budget_exhausted"

    def __init__(self, message: str, retry_after: int | None = 10):
        super().__init__(message, "model", {"Retry-After": str(retry_after)} if retry_after else None)


class ConflictError(GatewayError):
    """409: the request clashes with the server's state (a model id that is already registered)."""

    status_code = 409
    type = "invalid_request_error"
    code = "conflict"


class AuthenticationError(GatewayError):
    """401: the API key presented is not accepted (``MissingApiKeyError``: none was presented)."""

    status_code = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class MissingApiKeyError(AuthenticationError):
    """No key at all, in OpenAI's words. OpenAI sends ``code: null`` here; we keep ``invalid_api_key`` so
    that clients have one code for every refused key."""

    def __init__(self) -> None:
        super().__init__(
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or in an X-Api-Key header.",
            headers={"WWW-Authenticate": "Bearer"},
        )


class MethodNotAllowedError(GatewayError):
    """405: the route exists, but not for this HTTP method."""

    status_code = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeoutError(GatewayError):
    """408: the request took longer than its model's ``request_timeout``."""

    status_code = 408
    type = "timeout_error"
    code = "request_timeout"


class PayloadTooLargeError(GatewayError):
    """413: the body is larger than ``max_request_bytes``."""

    status_code = 413
    type = "invalid_request_error"
    code = "request_too_large"


class OverloadedError(GatewayError):
    """429: the model is at capacity; ``Retry-After`` says when to try again."""

    status_code = 429
    type = "rate_limit_error"
    code = "server_overloaded"


class UnsupportedMediaTypeError(GatewayError):
    """415: the body was not sent as JSON."""

    status_code = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class ServiceUnavailableError(GatewayError):
    """503: the model cannot serve the request now (its engine failed, or it is not loaded)."""

    status_code = 503
    type = "server_error"
    code = "service_unavailable"


class ClientDisconnectedError(GatewayError):
    """The client went away before its answer was ready; the status (nginx's 499) is for the log only."""

    status_code = 499
    type = "client_disconnected"

    def __init__(self) -> None:
        super().__init__("Client closed the request.")


class InternalServerError(GatewayError):
    """500: anything unexpected; the client gets this fixed message, the log gets the details."""

    status_code = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self) -> None:
        super().__init__("The server had an error while processing your request.")


def from_adapter_error(exc: AdapterError) -> GatewayError:
    """The one table from adapter failures to client-facing errors."""
    if isinstance(exc, PromptTooLongError):
        about = "about " if exc.counted_in_pieces else ""
        return ContextLengthExceededError(
            f"This model's maximum context length is {exc.context_length} tokens. However, you requested "
            f"{about}{exc.prompt_tokens + exc.requested_tokens} tokens ({about}{exc.prompt_tokens} in the "
            f"messages, {exc.requested_tokens} in the completion). Please reduce the length of the "
            "messages or completion.",
            param="messages",
        )
    if isinstance(exc, EngineOverloadedError):
        return OverloadedError(
            "The model is at capacity; retry after a short wait.",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, InvalidConversationError):
        return InvalidRequestError(str(exc), param="messages")
    if isinstance(exc, InvalidConstraintError):
        return InvalidRequestError(f"The output constraint cannot be compiled: {exc}", param=exc.param)
    if isinstance(exc, InvalidParametersError):
        return InvalidRequestError(f"Invalid sampling settings: {exc}")
    if isinstance(exc, EngineUnavailableError):
        headers = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return ServiceUnavailableError(f"The model stopped serving this request: {exc}", headers=headers)
    if isinstance(exc, ModelLoadError):
        return ServiceUnavailableError("The model is not available.", headers={"Retry-After": "5"})
    if isinstance(exc, GenerationFailedError):
        logger.error("generation failed: %s", exc)
        return InternalServerError()
    logger.error("unmapped adapter error: %r", exc)
    return InternalServerError()


def to_gateway_error(exc: BaseException) -> GatewayError:
    """Any exception as the error a client should see (used by handlers and mid-stream)."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, AdapterError):
        return from_adapter_error(exc)
    if isinstance(exc, msgspec.ValidationError):
        return InvalidRequestError(str(exc), param=_param_from_validation(str(exc)))
    if isinstance(exc, msgspec.DecodeError):
        return InvalidRequestError(f"We could not parse the JSON body of your request: {exc}")
    if isinstance(exc, ValidationException):
        return InvalidRequestError(_validation_message(exc), param=_validation_param(exc))
    if isinstance(exc, HTTPException):
        return _from_http_exception(exc)
    logger.error("unhandled error", exc_info=exc)
    return InternalServerError()


_HTTP_STATUS_ERRORS: dict[int, type[GatewayError]] = {
    401: AuthenticationError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    413: PayloadTooLargeError,
    429: OverloadedError,
    503: ServiceUnavailableError,
}


def _from_http_exception(exc: HTTPException) -> GatewayError:
    error_class = _HTTP_STATUS_ERRORS.get(exc.status_code)
    if error_class is None:
        error_class = InvalidRequestError if 400 <= exc.status_code < 500 else InternalServerError
    if error_class is InternalServerError:
        return InternalServerError()
    error = error_class(exc.detail or "Request failed")
    error.status_code = exc.status_code  # keep Litestar's exact status (e.g. 415) for the generic case
    return error


_PATH_RE = re.compile(r"at `\$\.?(.*?)`")


def _param_from_validation(message: str) -> str | None:
    """Where msgspec says "... - at `$.messages[0].role`", OpenAI's ``param`` is ``messages[0].role``."""
    match = _PATH_RE.search(message)
    if match:
        return match.group(1) or None
    missing = re.search(r"missing required field `(\w+)`", message)
    return missing.group(1) if missing else None


def _validation_message(exc: ValidationException) -> str:
    extra = exc.extra if isinstance(exc.extra, list) else []
    details = "; ".join(str(e.get("message", "")) for e in extra if isinstance(e, dict))
    return f"{exc.detail}: {details}" if details else str(exc.detail)


def _validation_param(exc: ValidationException) -> str | None:
    extra = exc.extra if isinstance(exc.extra, list) else []
    first: Any = extra[0] if extra else None
    return first.get("key") if isinstance(first, dict) else None


ERROR_SHAPE = "error_shape"
"""A route handler's ``opt`` key for a dialect whose errors are not OpenAI's (Anthropic's Messages): a
function from the ``GatewayError`` to the body to send."""


def error_response(request: Request, exc: Exception) -> Response[bytes]:
    """The app-wide exception handler: render any exception as an OpenAI error response, or in the
    shape of the route's dialect (``ERROR_SHAPE``)."""
    error = to_gateway_error(exc)
    handler = request.scope.get("route_handler")
    shape = handler.opt.get(ERROR_SHAPE) if handler is not None else None
    return Response(
        content=msgspec.json.encode(error.body() if shape is None else shape(error)),
        status_code=error.status_code,
        media_type=MediaType.JSON,
        headers=error.headers,
    )
