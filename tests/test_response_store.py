"""The Responses API's store: round trips, owners apart, age and size bounds, restarts, a killed writer."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from gateway.response_store import (
    SWEEP_EVERY_SECONDS,
    ResponseStoreError,
    SQLiteResponseStore,
    StoredResponse,
    owner_of,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0
ALICE = owner_of("sk-alice")
BOB = owner_of("sk-bob")


class Clock:
    """A clock the test moves by hand, so expiry and sweeps never depend on how fast the machine is."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def record(
    response_id: str, *, created_at: float = T0, owner: str | None = None, size: int = 0
) -> StoredResponse:
    """A response whose stored bytes (blobs plus id, as the store counts them) total ``size`` when given."""
    output = b'{"id": "' + response_id.encode() + b'"}'
    padding = max(0, size - len(response_id) - len(output) - 2)
    return StoredResponse(
        id=response_id,
        created_at=created_at,
        owner=owner,
        model="SmolLM2-135M-Instruct",
        previous_response_id=None,
        input_items=b"[",
        output=output,
        conversation=b"]" + b"x" * padding,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "responses.sqlite3"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(path: Path, clock: Clock) -> AsyncIterator[SQLiteResponseStore]:
    opened = SQLiteResponseStore(path, max_age_seconds=100, max_bytes=1 << 20, clock=clock)
    yield opened
    await opened.close()


def stored_ids(path: Path) -> set[str]:
    """The ids in the file, read past the store (expired rows included) to see what a sweep left."""
    with closing(sqlite3.connect(path)) as connection:
        return {row[0] for row in connection.execute("SELECT id FROM responses")}


def stored_bytes(path: Path) -> int:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute("SELECT SUM(size) FROM responses").fetchone()[0]


async def test_round_trip_keeps_every_field_and_byte(store):
    original = StoredResponse(
        id="resp_1",
        created_at=T0 + 0.25,
        owner=ALICE,
        model="m",
        previous_response_id="resp_0",
        input_items=b'[{"type": "message"}]',
        output=b"\x00\xff not even utf-8",
        conversation=b'[{"role": "user", "content": "hi"}]',
    )
    await store.put(original)
    assert await store.get("resp_1", ALICE) == original


async def test_unknown_id_is_none(store):
    await store.put(record("resp_1"))
    assert await store.get("resp_2", None) is None
    assert await store.delete("resp_2", None) is False


async def test_owners_are_kept_apart(store):
    await store.put(record("resp_a", owner=ALICE))
    await store.put(record("resp_b", owner=BOB))
    await store.put(record("resp_open", owner=None))
    assert await store.get("resp_b", ALICE) is None
    assert await store.get("resp_a", None) is None  # a keyless request sees no key's responses
    assert await store.get("resp_open", ALICE) is None  # nor a key the responses made without one
    assert await store.delete("resp_b", ALICE) is False
    assert (await store.get("resp_b", BOB)).owner == BOB  # still there for its owner
    assert (await store.get("resp_open", None)).id == "resp_open"


def test_owner_is_a_digest_never_the_key():
    assert owner_of(None) is None
    assert len(ALICE) == 64 and int(ALICE, 16) >= 0
    assert owner_of("sk-alice") == ALICE != BOB
    assert "alice" not in ALICE


async def test_delete(store):
    await store.put(record("resp_1"))
    await store.put(record("resp_2"))
    assert await store.delete("resp_1", None) is True
    assert await store.get("resp_1", None) is None
    assert await store.delete("resp_1", None) is False
    assert (await store.get("resp_2", None)).id == "resp_2"


async def test_put_with_a_known_id_replaces(store, path):
    await store.put(record("resp_1", size=50))
    await store.put(record("resp_1", size=80))
    assert await store.get("resp_1", None) == record("resp_1", size=80)
    assert stored_ids(path) == {"resp_1"}


async def test_expired_is_invisible_at_once_and_swept_later(path, clock):
    store = SQLiteResponseStore(path, max_age_seconds=100, max_bytes=1 << 20, sweep_every=1, clock=clock)
    try:
        await store.put(record("resp_old", created_at=T0))
        clock.now = T0 + 100  # exactly max age: still there
        assert (await store.get("resp_old", None)).id == "resp_old"
        clock.now = T0 + 100.5
        assert stored_ids(path) == {"resp_old"}  # not swept yet ...
        assert await store.get("resp_old", None) is None  # ... but already invisible
        assert await store.delete("resp_old", None) is False
        await store.put(record("resp_new", created_at=clock.now))
        assert stored_ids(path) == {"resp_new"}
    finally:
        await store.close()


async def test_a_long_stopped_store_is_swept_when_opened(path, clock):
    first = SQLiteResponseStore(path, max_age_seconds=100, max_bytes=1 << 20, clock=clock)
    await first.put(record("resp_old", created_at=T0))
    await first.put(record("resp_recent", created_at=T0 + 150))
    await first.close()
    clock.now = T0 + 200
    second = SQLiteResponseStore(path, max_age_seconds=100, max_bytes=1 << 20, clock=clock)
    await second.close()
    assert stored_ids(path) == {"resp_recent"}


async def test_size_bound_evicts_the_oldest_first(path, clock):
    store = SQLiteResponseStore(path, max_age_seconds=1e9, max_bytes=1000, sweep_every=1, clock=clock)
    try:
        # Stored out of age order: the bound goes by created_at, not by when a response was stored.
        for age in (5, 1, 4, 2, 3):
            await store.put(record(f"resp_{age}", created_at=T0 + age, size=300))
        assert stored_ids(path) == {"resp_3", "resp_4", "resp_5"}  # a fourth would be 1200 bytes
        assert stored_bytes(path) == 900
        for age in (3, 4, 5):
            assert (await store.get(f"resp_{age}", None)).created_at == T0 + age
    finally:
        await store.close()


async def test_sweeps_wait_for_enough_puts_or_time(path, clock):
    store = SQLiteResponseStore(path, max_age_seconds=1e9, max_bytes=1000, sweep_every=10, clock=clock)
    try:
        for age in range(9):
            await store.put(record(f"resp_{age}", created_at=T0 + age, size=300))
        assert len(stored_ids(path)) == 9  # over the bound, until the tenth put ...
        await store.put(record("resp_9", created_at=T0 + 9, size=300))
        assert stored_ids(path) == {"resp_7", "resp_8", "resp_9"}
        for age in range(10, 13):
            await store.put(record(f"resp_{age}", created_at=T0 + age, size=300))
        assert len(stored_ids(path)) == 6
        clock.now += SWEEP_EVERY_SECONDS  # ... or until enough time has passed
        await store.put(record("resp_13", created_at=T0 + 13, size=300))
        assert stored_ids(path) == {"resp_11", "resp_12", "resp_13"}
    finally:
        await store.close()


async def test_data_survives_a_restart(path, clock):
    first = SQLiteResponseStore(path, max_age_seconds=100, max_bytes=1 << 20, clock=clock)
    await first.put(record("resp_1", owner=ALICE, size=500))
    await first.close()
    await first.close()  # a second close does nothing
    with pytest.raises(ResponseStoreError, match="closed"):
        await first.get("resp_1", ALICE)
    second = SQLiteResponseStore(path, max_age_seconds=100, max_bytes=1 << 20, clock=clock)
    try:
        assert await second.get("resp_1", ALICE) == record("resp_1", owner=ALICE, size=500)
    finally:
        await second.close()


async def test_many_concurrent_puts_and_gets(store, path):
    async def one(n: int) -> tuple[str, str | None]:
        await store.put(record(f"resp_{n}", owner=ALICE if n % 2 else BOB, size=n))
        mine = await store.get(f"resp_{n}", ALICE if n % 2 else BOB)
        earlier = await store.get(f"resp_{n // 2}", ALICE if (n // 2) % 2 else BOB)  # put before this one
        return mine.id, earlier.id

    results = await asyncio.gather(*(one(n) for n in range(300)))
    assert results == [(f"resp_{n}", f"resp_{n // 2}") for n in range(300)]
    assert len(stored_ids(path)) == 300


def test_refuses_a_corrupt_file(path):
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(ResponseStoreError, match=rf"{path}.*unusable.*responses\.path"):
        SQLiteResponseStore(path)


def test_refuses_a_path_it_cannot_open(tmp_path):
    with pytest.raises(ResponseStoreError, match=rf"{tmp_path} is unusable"):
        SQLiteResponseStore(tmp_path)  # a folder


def test_refuses_a_newer_schema(path):
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA user_version = 2")
    with pytest.raises(ResponseStoreError, match=rf"{path} has schema version 2.*upgrade OpenArc"):
        SQLiteResponseStore(path)


WRITER = """
import asyncio, sys
from pathlib import Path
from gateway.response_store import SQLiteResponseStore, StoredResponse

async def main():
    store = SQLiteResponseStore(Path(sys.argv[1]), max_age_seconds=1e12, max_bytes=1 << 40, sweep_every=20)
    n = 0
    while True:
        rid = f"resp_{n}"
        await store.put(StoredResponse(
            id=rid, created_at=1e9 + n, owner=None, model="m", previous_response_id=None,
            input_items=b"[]", output=rid.encode() * 50, conversation=b"x" * (n * 37 % 20000),
        ))
        print(rid, flush=True)
        n += 1

asyncio.run(main())
"""


async def test_a_killed_writer_loses_nothing_it_committed(path, tmp_path):
    """A process killed while it writes as fast as it can: every put that returned is in the file."""
    stderr = (tmp_path / "writer.err").open("w+")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True
    )
    committed = []
    try:
        while len(committed) < 500:  # well into its loop, however fast the machine
            line = writer.stdout.readline()
            if not line:
                stderr.seek(0)
                pytest.fail(f"the writer died: {stderr.read()}")
            committed.append(line.strip())
        writer.send_signal(signal.SIGKILL)
        committed += [line.strip() for line in writer.stdout.read().splitlines() if line.strip()]
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
        stderr.close()
    assert writer.returncode == -signal.SIGKILL
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    store = SQLiteResponseStore(path, max_age_seconds=1e12, max_bytes=1 << 40)
    try:
        for rid in committed:
            found = await store.get(rid, None)
            assert found is not None, f"{rid} was committed and is gone"
            assert found.output == rid.encode() * 50
    finally:
        await store.close()
