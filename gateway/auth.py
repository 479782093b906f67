"""API keys: where they come from, how a presented key is checked, and the guard that enforces them.

Policy, decided by path so that it lives in one place:

- ``/health`` and ``/ready`` are always open (load balancers and Kubernetes probes carry no keys), and so
  is the chat page at ``/`` (static; its calls to the API carry the key its user types in).
- ``/admin`` takes the admin key when one is set (an API key there is a 401); without an admin key it
  takes the API keys; with neither it is open, as before API keys existed.
- Everything else, ``/metrics`` and the OpenAPI document included, takes the API keys when any are set.

Keys are compared in constant time against every configured key, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from pathlib import Path

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from .config import ConfigError, ServerConfig
from .errors import AuthenticationError, MissingApiKeyError

logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/ready", "/"})
ADMIN_PREFIX = "/admin"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class KeySet:
    """A set of secret keys that can say whether a presented key is one of them, in constant time.

    Keys are kept as SHA-256 digests: every comparison is then between equal-length values, so neither
    the length of a key nor which key matched shows in the time taken.
    """

    def __init__(self, keys: Iterable[str]):
        self._digests = tuple(_digest(key) for key in keys)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __repr__(self) -> str:
        return f"KeySet({len(self._digests)} keys)"

    def matches(self, presented: str) -> bool:
        """Whether ``presented`` is one of the keys; compares against all of them, without early exit."""
        candidate = _digest(presented)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def read_key_file(path: Path) -> list[str]:
    """Keys from a file, one a line; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.expanduser().read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read API key file {path}: {exc.strerror}") from exc
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def presented_keys(connection: ASGIConnection) -> list[str]:
    """The keys a request carries: a bearer token and/or an ``X-Api-Key`` header."""
    keys = []
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    if api_key := connection.headers.get("x-api-key", "").strip():
        keys.append(api_key)
    return keys


class Authenticator:
    """The guard: built once per app from the config, called by Litestar before every handler."""

    def __init__(self, config: ServerConfig):
        self.api_keys = KeySet(config.api_keys)
        self.admin_keys = KeySet([config.admin_key] if config.admin_key else [])

    def keys_for(self, path: str) -> KeySet | None:
        """The keys that open ``path``, or ``None`` when it is open to all."""
        if path in PUBLIC_PATHS:
            return None
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            keys = self.admin_keys or self.api_keys
        else:
            keys = self.api_keys
        return keys or None

    def __call__(self, connection: ASGIConnection, _: BaseRouteHandler) -> None:
        """Let the request through if its path is open or it presents a right key; else raise
        ``MissingApiKeyError`` (no key at all) or ``AuthenticationError``."""
        keys = self.keys_for(connection.scope.get("path_template") or connection.url.path)
        if keys is None:
            return
        presented = presented_keys(connection)
        if not presented:
            raise MissingApiKeyError
        # Check every presented key (no short-circuit), so timing does not tell which header was wrong.
        accepted = False
        for key in presented:
            accepted |= keys.matches(key)
        if not accepted:
            raise AuthenticationError("Incorrect API key provided.", headers={"WWW-Authenticate": "Bearer"})


def exposure_warnings(config: ServerConfig) -> list[str]:
    """What is open to the network when the server listens beyond loopback without keys."""
    if config.host in LOOPBACK_HOSTS:
        return []
    warnings = []
    if not config.api_keys:
        warnings.append(f"the API is open to anyone who can reach {config.host}: set --api-key")
    if not config.api_keys and config.admin_key is None:
        warnings.append(f"/admin is open to anyone who can reach {config.host}: set --admin-key")
    return warnings
