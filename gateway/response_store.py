"""Where stored Responses API responses live, so that ``previous_response_id`` can continue a conversation.

The API code sees only the ``ResponseStore`` protocol: a server database (PostgreSQL, for several
replicas) can be added beside ``SQLiteResponseStore`` without touching it. The store is ignorant of the
API's JSON shapes: the caller encodes, the store keeps bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from msgspec import Struct
from msgspec.structs import astuple

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_SECONDS = 30 * 86400.0
"""Stored responses older than this are gone: OpenAI keeps stored responses 30 days."""
DEFAULT_MAX_BYTES = 1024**3
"""The size bound (1 GB of stored bytes); past it, the oldest responses go first."""
SWEEP_EVERY_PUTS = 100
"""A put sweeps (expired rows out, then the oldest until under the size bound) after this many puts..."""
SWEEP_EVERY_SECONDS = 10.0
"""...or when this long has passed since the last sweep, whichever comes first."""
SCHEMA_VERSION = 1
"""Kept in SQLite's ``user_version``: a later schema migrates from it, an older OpenArc refuses a newer."""

_T = TypeVar("_T")


class ResponseStoreError(Exception):
    """The store's file cannot be used; the message is one line naming the file and what to do."""


class StoredResponse(Struct, kw_only=True):
    """One stored response, as bytes the caller encoded."""

    id: str
    created_at: float
    """Unix seconds."""
    owner: str | None
    """``owner_of`` the API key that made it; ``None`` when the server has no keys."""
    model: str
    previous_response_id: str | None
    input_items: bytes
    """The request's own input items (JSON), for ``GET /v1/responses/{id}/input_items``."""
    output: bytes
    """The response object (JSON), for ``GET /v1/responses/{id}``."""
    conversation: bytes
    """The whole conversation up to and including this response's output, as JSON chat messages, so a
    continuation needs one read rather than a walk down the chain of previous responses."""


_FIELDS = StoredResponse.__struct_fields__
_COLUMNS = ", ".join(_FIELDS)


@runtime_checkable  # Litestar checks each dependency against its handler's annotation
class ResponseStore(Protocol):
    """Keeps stored responses; ``get`` and ``delete`` see only the owner's, and never expired ones."""

    async def put(self, record: StoredResponse) -> None:
        """Store ``record``, replacing any response with its id."""
        ...

    async def get(self, response_id: str, owner: str | None) -> StoredResponse | None:
        """The owner's response with this id; ``None`` when it is unknown, expired or another owner's."""
        ...

    async def delete(self, response_id: str, owner: str | None) -> bool:
        """Delete the owner's response with this id; ``False`` when ``get`` would not have found it."""
        ...

    async def close(self) -> None:
        """Release the store; a second call must do nothing."""
        ...


def owner_of(api_key: str | None) -> str | None:
    """The owner recorded for ``api_key``: a SHA-256 hex digest, never the key, because the database file
    outlives requests and may be copied or backed up, and must not hand out working keys. A plain hash
    (with a prefix, so it matches no other digest of the key) rather than a keyed one: a key for the hash
    would have to be stored beside the database, and would protect nothing a thief of the file lacks."""
    if api_key is None:
        return None
    return hashlib.sha256(b"openarc-response-owner\0" + api_key.encode("utf-8", "surrogatepass")).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    owner TEXT,
    model TEXT NOT NULL,
    previous_response_id TEXT,
    input_items BLOB NOT NULL,
    output BLOB NOT NULL,
    conversation BLOB NOT NULL,
    size INTEGER NOT NULL
);
-- (created_at, size) covers both the age sweep and the size sum: neither reads the table's rows.
CREATE INDEX IF NOT EXISTS responses_by_age ON responses (created_at, size);
"""


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Autocommit: every statement is its own transaction unless wrapped in BEGIN ... COMMIT.
    connection = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ResponseStoreError(
                f"response store {path} has schema version {version}, newer than this OpenArc's "
                f"{SCHEMA_VERSION}: upgrade OpenArc, or set responses.path to another file"
            )
        connection.execute("PRAGMA journal_mode=WAL")
        # NORMAL syncs the WAL only at checkpoints: on power failure the last committed transactions may
        # be lost, but the file is never corrupted, and a killed process loses nothing committed (the
        # WAL is in the OS's cache). Losing a few seconds of stored chats on power loss is acceptable; an
        # fsync per response is not worth it.
        connection.execute("PRAGMA synchronous=NORMAL")
        if version < SCHEMA_VERSION:
            connection.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
    except BaseException:
        connection.close()
        raise
    return connection


class SQLiteResponseStore:
    """A ``ResponseStore`` in one SQLite file, bounded in age and size, for a single server.

    One worker thread owns the connection (SQLite connections must stay on one thread), so statements
    run one at a time and the event loop never waits on the disk. The file opens in the constructor, so
    a bad file stops start-up with a ``ResponseStoreError``.
    """

    def __init__(
        self,
        path: Path,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        sweep_every: int = SWEEP_EVERY_PUTS,
        clock: Callable[[], float] = time.time,
    ):
        self.path = path
        self.max_age_seconds = max_age_seconds
        self.max_bytes = max_bytes
        self._sweep_every = sweep_every
        self._clock = clock
        self._puts_since_sweep, self._last_sweep = 0, clock()
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="response-store"
        )
        try:
            self._connection = self._executor.submit(_open, path).result()
            self._executor.submit(self._sweep).result()  # a file left by a long stop may be all stale
        except BaseException as exc:
            if hasattr(self, "_connection"):
                self._executor.submit(self._connection.close).result()
            self._executor.shutdown()
            if isinstance(exc, sqlite3.DatabaseError | OSError):
                raise ResponseStoreError(
                    f"response store {path} is unusable ({exc}): move it away, or set responses.path to "
                    "another file"
                ) from exc
            raise

    def __repr__(self) -> str:
        return f"SQLiteResponseStore({str(self.path)!r})"

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            raise ResponseStoreError(f"response store {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def put(self, record: StoredResponse) -> None:
        """Store ``record`` (replacing one with its id); now and then sweep old rows out."""
        await self._run(self._put, record)

    async def get(self, response_id: str, owner: str | None) -> StoredResponse | None:
        """The response, or ``None`` when it is unknown, expired or another owner's (alike, so a caller
        cannot learn that another key's response exists)."""
        return await self._run(self._get, response_id, owner)

    async def delete(self, response_id: str, owner: str | None) -> bool:
        """Delete the response; ``False`` when ``get`` would not have found it."""
        return await self._run(self._delete, response_id, owner)

    async def close(self) -> None:
        """Close the file (its WAL is checkpointed into it); a second call does nothing."""
        if self._executor is None:
            return
        await self._run(self._connection.close)
        self._executor.shutdown()
        self._executor = None

    def _put(self, record: StoredResponse) -> None:
        size = len(record.input_items) + len(record.output) + len(record.conversation) + len(record.id)
        self._connection.execute(
            f"INSERT OR REPLACE INTO responses ({_COLUMNS}, size) VALUES ({'?, ' * len(_FIELDS)}?)",
            (*astuple(record), size),
        )
        self._puts_since_sweep += 1
        due = self._clock() - self._last_sweep >= SWEEP_EVERY_SECONDS
        if due or self._puts_since_sweep >= self._sweep_every:
            self._sweep()

    def _get(self, response_id: str, owner: str | None) -> StoredResponse | None:
        # The age test is in the query: an expired row is invisible before the sweep removes it.
        row = self._connection.execute(
            f"SELECT {_COLUMNS} FROM responses WHERE id = ? AND owner IS ? AND created_at >= ?",
            (response_id, owner, self._clock() - self.max_age_seconds),
        ).fetchone()
        if row is None:
            return None
        return StoredResponse(**dict(zip(_FIELDS, row, strict=True)))

    def _delete(self, response_id: str, owner: str | None) -> bool:
        cursor = self._connection.execute(
            "DELETE FROM responses WHERE id = ? AND owner IS ? AND created_at >= ?",
            (response_id, owner, self._clock() - self.max_age_seconds),
        )
        return cursor.rowcount > 0

    def _sweep(self) -> None:
        """Delete expired rows, then the oldest until the stored bytes fit ``max_bytes``."""
        now = self._clock()
        self._puts_since_sweep, self._last_sweep = 0, now
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            expired = connection.execute(
                "DELETE FROM responses WHERE created_at < ?", (now - self.max_age_seconds,)
            ).rowcount
            total = connection.execute("SELECT COALESCE(SUM(size), 0) FROM responses").fetchone()[0]
            evicted = []
            if total > self.max_bytes:
                for rowid, size in connection.execute(
                    "SELECT rowid, size FROM responses ORDER BY created_at"
                ):
                    evicted.append((rowid,))
                    total -= size
                    if total <= self.max_bytes:
                        break
                connection.executemany("DELETE FROM responses WHERE rowid = ?", evicted)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        if expired or evicted:
            logger.info(
                "response store: %d expired and %d over the size bound removed", expired, len(evicted)
            )
