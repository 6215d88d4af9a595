"""Expiring links to evidence: an HMAC-SHA256 over the object and the expiry time.

Whoever holds the service's secret can make a link (the evidence service,
the dispatch service embedding links in case events); a link is good for
the one object until it expires, and nothing else: not another object, not
a later time. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode


def signature(secret: bytes, key: str, expires: int) -> str:
    """The signature of ``key`` until the Unix time ``expires``."""
    return hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_query(secret: bytes, key: str, ttl_s: float, now: float | None = None) -> str:
    """``exp=...&sig=...`` for ``key``, good for ``ttl_s`` seconds from ``now``."""
    expires = int((time.time() if now is None else now) + ttl_s)
    return urlencode({"exp": expires, "sig": signature(secret, key, expires)})


def verify(secret: bytes, key: str, exp: str, sig: str, now: float | None = None) -> str | None:
    """``None`` if the link is good now, else why not (``expired``, ``bad signature``)."""
    try:
        expires = int(exp)
    except ValueError:
        return "bad expiry"
    if not hmac.compare_digest(signature(secret, key, expires), sig):
        return "bad signature"
    if (time.time() if now is None else now) > expires:
        return "expired"
    return None
