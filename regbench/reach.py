"""Whether a server can be reached from here, asked once and quickly, before
work that needs it starts: MLflow's tracking server (regbench.trackers) and
the servers torchvision downloads a missing dataset from (regbench.preflight).
Imports nothing heavy."""

from __future__ import annotations

import functools
from typing import Optional

TIMEOUT_S = 5.0


@functools.lru_cache(maxsize=64)
def unreachable(url: str, timeout_s: float = TIMEOUT_S) -> Optional[str]:
    """Why ``url``'s host accepts no connection on its port (the OS's words,
    e.g. "Connection refused", "Name or service not known"), or None where it
    does, where ``url`` is not http(s), or where an HTTP(S) proxy stands
    between (HTTP_PROXY, HTTPS_PROXY: the client goes through it, and the host
    may be out of direct reach). One TCP connection, at most ``timeout_s``;
    asked once per process."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    import socket
    import urllib.request

    if urllib.request.getproxies().get(parts.scheme) and not urllib.request.proxy_bypass(parts.hostname):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None
