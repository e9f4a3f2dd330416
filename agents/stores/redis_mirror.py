"""The Redis mirror of sessions (contract §7): the only module that talks to Redis.

PostgreSQL is the source of truth. Every write here is idempotent (SET a whole document, DEL keys)
so that repeating it after a failure, or rebuilding from PostgreSQL, always converges.

``RedisMirror`` (what the batch applier writes through) raises ``errors.MirrorUnavailable`` for
whatever Redis refuses, so that nothing above it names the client's exceptions.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, TypeAlias
from uuid import UUID

import redis.asyncio as aioredis
from pydantic_core import to_json
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agents.core.documents import PlannedDocument
from agents.stores.errors import MirrorUnavailable, describe

SESSION_KEY = "onboarding:session:{session_id}"
USER_KEY = "onboarding:user:{user_id}"

# Errors that mean "Redis is not there right now", as opposed to a bug in how we call it.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)

# The client, named here so that callers need not import redis for a hint.
Client: TypeAlias = aioredis.Redis


def text(value: bytes | str) -> str:
    """A Redis reply as text (the client answers bytes unless told to decode)."""
    return value.decode() if isinstance(value, bytes) else value


def session_key(session_id: UUID | str) -> str:
    return SESSION_KEY.format(session_id=session_id)


def user_key(user_id: str) -> str:
    return USER_KEY.format(user_id=user_id)


async def write_sessions(
    client: aioredis.Redis,
    documents: Sequence[Mapping[str, Any]],
    *,
    stale_sessions: Iterable[UUID | str] = (),
    users_without_session: Iterable[str] = (),
) -> None:
    """Make Redis match PostgreSQL for some users, in one pipeline round trip.

    One DEL for what is gone, then one MSET of every document and user pointer: two commands
    for a whole batch. No MULTI: both are idempotent and a half-applied pipeline is repaired by
    the next write of the same users.
    """
    stale = [session_key(session_id) for session_id in stale_sessions]
    gone = [user_key(user_id) for user_id in users_without_session]
    pairs: dict[str, bytes] = {}
    for document in documents:
        pairs[session_key(document["session_id"])] = _dumps(document)
        pairs[user_key(document["user_id"])] = str(document["session_id"]).encode()
    if not (stale or gone or pairs):
        return
    async with client.pipeline(transaction=False) as pipe:
        if stale or gone:
            pipe.delete(*stale, *gone)
        if pairs:
            pipe.mset(pairs)
        await pipe.execute()


async def read_session(client: aioredis.Redis, user_id: str) -> tuple[str | None, Any]:
    """The user's session id pointer and the session document it points to (either may be None)."""
    pointer = await client.get(user_key(user_id))
    if pointer is None:
        return None, None
    session_id = text(pointer)
    raw = await client.get(session_key(session_id))
    return session_id, json.loads(raw) if raw is not None else None


async def scan_ids(
    client: aioredis.Redis, pattern: str, *, chunk: int = 1000
) -> AsyncIterator[list[str]]:
    """The variable part of keys matching ``SESSION_KEY``/``USER_KEY``, in chunks (SCAN)."""
    prefix = pattern.split("{", 1)[0]
    found: list[str] = []
    async for key in client.scan_iter(match=prefix + "*", count=chunk):
        found.append(text(key)[len(prefix) :])
        if len(found) >= chunk:
            yield found
            found = []
    if found:
        yield found


async def user_pointers(client: aioredis.Redis, user_ids: Sequence[str]) -> list[str | None]:
    """The session id each user's pointer holds (None where there is none), in order."""
    if not user_ids:
        return []
    raw = await client.mget([user_key(user) for user in user_ids])
    return [None if value is None else text(value) for value in raw]


async def raw_sessions(
    client: aioredis.Redis, session_ids: Sequence[str]
) -> list[bytes | str | None]:
    """The stored session documents (undecoded; None where absent), in order."""
    if not session_ids:
        return []
    return list(await client.mget([session_key(raw) for raw in session_ids]))


# For ``migrator verify``: per key (ARGV[2]: the keys, one a line; the first ARGV[1] are user
# pointers), the pointer a user key holds, or the SHA-1 of the document a session key holds
# ("" when absent), joined by newlines into one reply. Hashing inside Redis sends 41 bytes per
# document instead of the document, and one reply per script call instead of one per key (which
# the client would parse one by one); the keys travel as one argument, not one each, for the
# client packs each argument of a command in Python. Read-only; a standalone Redis, as the
# mirror is.
_DIGESTS = """
local out = {}
local pointers = tonumber(ARGV[1])
local i = 0
for key in string.gmatch(ARGV[2], '[^\\n]+') do
    i = i + 1
    local value = redis.call('GET', key)
    if not value then
        out[i] = ''
    elseif i <= pointers then
        out[i] = value
    else
        out[i] = redis.sha1hex(value)
    end
end
return table.concat(out, '\\n')
"""
# Keys per script call: one call blocks Redis while it hashes its documents (about 2 ms per
# thousand), so a verification never holds the workers' writes back for long.
DIGEST_KEYS = 1_000


async def digests(
    client: aioredis.Redis, user_ids: Sequence[str], session_ids: Sequence[str]
) -> tuple[list[str | None], list[str | None]]:
    """The pointer of each user and the SHA-1 hex of each session document (None: no key),
    in order, in one round trip."""
    keys = [user_key(user) for user in user_ids] + [session_key(s) for s in session_ids]
    if not keys:
        return [], []
    script = client.register_script(_DIGESTS)
    async with client.pipeline(transaction=False) as pipe:
        for start in range(0, len(keys), DIGEST_KEYS):
            part = keys[start : start + DIGEST_KEYS]
            pointers = max(0, min(len(user_ids) - start, len(part)))
            await script(keys=[], args=[pointers, "\n".join(part)], client=pipe)
        replies = await pipe.execute()
    values: list[str | None] = []
    for reply, start in zip(replies, range(0, len(keys), DIGEST_KEYS), strict=True):
        part = text(reply).split("\n") if reply else [""]
        values += [value or None for value in part][: min(DIGEST_KEYS, len(keys) - start)]
    return values[: len(user_ids)], values[len(user_ids) :]


async def session_exists(client: aioredis.Redis, session_id: UUID | str) -> bool:
    return bool(await client.exists(session_key(session_id)))


async def delete_keys(client: aioredis.Redis, keys: Sequence[str]) -> int:
    return int(await client.delete(*keys)) if keys else 0


# The ``run_id`` of the Redis whose mirror was last rebuilt whole (``mirror_repair``).
MARKER_KEY = "onboarding:mirror:rebuilt-for"


async def server_run_id(client: aioredis.Redis) -> str | None:
    """The run id of the Redis server (new at every start); None when Redis does not answer."""
    try:
        info = await client.info("server")
    except UNAVAILABLE:
        return None
    return str(info["run_id"])


async def rebuilt_for(client: aioredis.Redis) -> str | None:
    """What the rebuild marker holds (None: no marker, Redis lost it or never had it)."""
    marker = await client.get(MARKER_KEY)
    return None if marker is None else text(marker)


async def swap_marker(client: aioredis.Redis, value: str) -> str | None:
    """Set the rebuild marker; what it held before."""
    previous = await client.set(MARKER_KEY, value, get=True)
    return text(previous) if isinstance(previous, bytes | str) else None


async def ping(client: aioredis.Redis) -> bool:
    return bool(await client.ping())


def _dumps(document: Mapping[str, Any]) -> bytes:
    if isinstance(document, PlannedDocument):
        head = dict(document)
        del head["steps"]
        return encode_document_with_steps(head, document.steps_json)
    return to_json(document)


def encode_document(document: Mapping[str, Any]) -> bytes:
    """The exact bytes ``write_sessions`` stores for a document (``migrator verify`` compares
    the mirror against them before it decodes anything)."""
    return _dumps(document)


def encode_document_with_steps(head: Mapping[str, Any], steps_json: bytes) -> bytes:
    """``encode_document({**head, "steps": steps})`` given ``steps`` already encoded: the steps
    of a session are one of a few thousand lists, so ``migrator verify`` encodes each once."""
    return _dumps(head)[:-1] + b',"steps":' + steps_json + b"}"


class RedisMirror:
    """``protocol.SessionMirror`` over a client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def write_sessions(
        self,
        documents: Sequence[Mapping[str, Any]],
        *,
        stale_sessions: Sequence[str],
        users_without_session: Sequence[str],
    ) -> None:
        """Raises ``MirrorUnavailable`` for anything Redis refuses."""
        try:
            await write_sessions(
                self.client,
                documents,
                stale_sessions=stale_sessions,
                users_without_session=users_without_session,
            )
        except (*UNAVAILABLE, RedisError) as exc:
            raise MirrorUnavailable(describe(exc)) from exc
