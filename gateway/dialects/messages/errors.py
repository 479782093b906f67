"""Errors in Anthropic's shape: ``{"type": "error", "error": {"type", "message"}}``.

The gateway's one error hierarchy decides the status; this maps it to Anthropic's error types
(https://docs.anthropic.com/en/api/errors), for the Messages routes and their streams.
"""

from __future__ import annotations

from ...errors import GatewayError
from .wire import AnthropicErrorDetail, AnthropicErrorResponse

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def anthropic_error(error: GatewayError) -> AnthropicErrorResponse:
    """``error`` as Anthropic sends it (the type from the status; 5xx other than 503 are ``api_error``)."""
    kind = _TYPES.get(error.status_code, "invalid_request_error" if error.status_code < 500 else "api_error")
    return AnthropicErrorResponse(error=AnthropicErrorDetail(type=kind, message=error.message))
