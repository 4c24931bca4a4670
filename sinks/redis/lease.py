"""A lease in Redis: at most one holder at a time of a named role (the notifier, the scheduler).

The holder takes the key with ``SET NX PX`` and renews it before it expires; a
standby that finds the key taken waits and takes it once the holder stops
renewing (crashed, stopped, cut off). Renewing and releasing compare the
holder's id in one script, so a process that lost its lease can neither extend
nor delete the lease of the one that took over. A holder whose renewal fails
must stop acting: another may already hold the role.
"""

from __future__ import annotations

import threading
import time

import redis

# KEYS[1] = lease; ARGV = owner, ttl ms. Extend the lease if we hold it.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS[1] = lease; ARGV = owner. Delete the lease if we hold it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """The lease at ``key``; ``owner`` ids are any unique strings (a uuid per process)."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self, owner: str, ttl_ms: int) -> bool:
        """Take the lease; False while another holds it."""
        return bool(self.client.set(self.key, owner, nx=True, px=ttl_ms))

    def renew(self, owner: str, ttl_ms: int) -> bool:
        """Extend our lease; False when it was lost (expired and taken)."""
        return bool(self._renew(keys=[self.key], args=[owner, ttl_ms]))

    def holds(self, owner: str, client: redis.Redis | None = None) -> bool:
        """Whether ``owner`` holds the lease now (``client``: e.g. a pipeline that watches it)."""
        held = (client or self.client).get(self.key)
        return held is not None and held == owner.encode()

    def release(self, owner: str) -> None:
        """Give the lease up if we hold it, so a standby takes over at once."""
        self._release(keys=[self.key], args=[owner])

    def wait(
        self, owner: str, ttl_ms: int, *, wait_s: float | None, stop: threading.Event | None
    ) -> bool:
        """Take the lease, polling every quarter lease (at most a second) while another
        holds it; ``wait_s=None`` waits as long as it takes (a standby).

        Returns False when ``wait_s`` passes or ``stop`` is set first.
        """
        deadline = None if wait_s is None else time.monotonic() + wait_s
        pause = min(1.0, ttl_ms / 4000)
        while not self.acquire(owner, ttl_ms):
            if deadline is not None and time.monotonic() > deadline:
                return False
            if stop is not None:
                if stop.wait(pause):
                    return False
            else:
                time.sleep(pause)
        return True
