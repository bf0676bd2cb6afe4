"""The Redis result backend the Celery app uses: a task's stored SUCCESS is final.

Celery's own key-value backend reads a task's state and skips the write when it is already SUCCESS, but the
read and the write are two round trips. Two copies of one task can run at once (a retry message delivered
twice, a redelivery racing the first run); when one copy's SUCCESS lands between the other's read and
write, the other's later RETRY or FAILURE replaces it. The client then waits on RETRY for a message that
may never come, and a finished product looks unfinished. Here the check and the write are one Lua script,
so Redis applies them together.

Only task-state keys are guarded; group and chord keys are written as Celery writes them. Results are JSON
(the app's ``result_serializer``); a stored value that is not JSON is overwritten as before.
"""

from __future__ import annotations

from celery.backends.redis import RedisBackend

REDIS_SCHEMES = frozenset({"redis", "rediss"})  # URL schemes of a Redis broker or result backend

# KEYS[1] the task's meta key; ARGV[1] the encoded meta; ARGV[2] seconds to keep it (0: no expiry).
# Returns 1 when written (and published to the key's subscribers), 0 when a stored SUCCESS was kept.
_SET_UNLESS_SUCCEEDED = """
local current = redis.call('GET', KEYS[1])
if current then
    local ok, meta = pcall(cjson.decode, current)
    if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then
        return 0
    end
end
local ttl = tonumber(ARGV[2])
if ttl and ttl > 0 then
    redis.call('SETEX', KEYS[1], ttl, ARGV[1])
else
    redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


class FinalSuccessRedisBackend(RedisBackend):
    """``RedisBackend`` whose task-state writes never replace a stored SUCCESS (atomically, in Redis)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_unless_succeeded = self.client.register_script(_SET_UNLESS_SUCCEEDED)
        self._task_prefix = _as_bytes(self.task_keyprefix)

    def _set(self, key, value, expires=None):
        if not _as_bytes(key).startswith(self._task_prefix):
            return super()._set(key, value, expires)
        seconds = self.expires if expires is None else expires
        return self._set_unless_succeeded(keys=[key], args=[value, int(seconds or 0)])


def _as_bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode()


def guarded_backend_url(url: str) -> str:
    """``url`` as Celery's backend setting naming :class:`FinalSuccessRedisBackend` (``class+redis://...``);
    other backends are left as they are."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in REDIS_SCHEMES:
        return f"{__name__}:{FinalSuccessRedisBackend.__name__}+{url}"
    return url
