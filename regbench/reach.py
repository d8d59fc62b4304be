"""Whether a server can be reached from here, asked quickly before work that
needs it starts: MLflow's tracking server (regbench.trackers) and the
servers torchvision downloads a missing dataset from (regbench.preflight).
Imports nothing heavy."""

from __future__ import annotations

import threading
import time
from typing import Optional

TIMEOUT_S = 5.0
REMEMBER_S = 30.0  # an answer is reused this long (a sweep's settings ask for the same server)

_answers: dict[tuple, tuple[float, Optional[str]]] = {}


def unreachable(url: str, timeout_s: float = TIMEOUT_S) -> Optional[str]:
    """Why ``url``'s host accepts no connection on its port (the OS's words,
    e.g. "Connection refused", "Name or service not known", or "no answer
    within 3 s"), or None where it does or where ``url`` is not http(s).
    Behind an HTTP(S) proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY: the client
    goes through it, and the host may be out of direct reach) the proxy is
    asked instead ("through the proxy http://...: why").

    At most ``timeout_s`` in all, name lookup and every address of the host
    included (the connection is tried on a thread that is left behind when it
    takes longer). An answer is reused for ``REMEMBER_S`` seconds, for the same
    proxy settings."""
    from urllib.parse import urlsplit
    import urllib.request

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    proxies = urllib.request.getproxies()
    key = (url, timeout_s, tuple(sorted(proxies.items())))
    now = time.monotonic()
    if key in _answers and now - _answers[key][0] < REMEMBER_S:
        return _answers[key][1]
    through = ""
    proxy = proxies.get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        through = f"through the proxy {proxy}: "
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if not parts.hostname:
            return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number: the client will say so itself
        return None
    answer: list[Optional[str]] = []

    def connect() -> None:
        import socket

        try:
            socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
            answer.append(None)
        except OSError as exc:
            answer.append(exc.strerror or ("no answer" if isinstance(exc, TimeoutError) else type(exc).__name__))

    worker = threading.Thread(target=connect, daemon=True, name="regbench-reach")
    worker.start()
    worker.join(timeout_s)
    why = answer[0] if answer else None
    if not answer or why == "no answer":
        why = f"no answer within {timeout_s:g} s"
    why = f"{through}{why}" if why else None
    _answers[key] = (now, why)
    return why
