"""Who may talk to the server: an API key, the Host header, and the Origin of browser requests.

A server on localhost is still reachable from every web page the user opens: a page can POST a form to it
(forms need no CORS preflight), and a page on a DNS-rebinding domain (attacker.example resolving to 127.0.0.1)
can even read the replies. So:
- the Host header must name the bound address (loopback names for a loopback server) or an allowed host;
- a request that changes something (POST) and carries an Origin (every browser sends one on cross-site
  posts) or `Sec-Fetch-Site: cross-site` from another site is refused;
- with an API key (required to bind a non-loopback address), every endpoint but the page, its static files and
  /health needs `Authorization: Bearer <key>` or `X-API-Key: <key>`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
API_KEY_ENV = "POLYMODAL_API_KEY"
OPEN_PATHS = ("/", "/health")  # plus /static/...: the page asks for the key itself
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def check_binding(host: str, api_key: str | None) -> None:
    """Refuse to serve a non-loopback address without an API key."""
    if not is_loopback(host) and not api_key:
        raise ValueError(f"binding {host!r} exposes the model beyond this machine: set an API key with --api-key "
                         f"or the {API_KEY_ENV} environment variable (or bind 127.0.0.1)")


def default_hosts(host: str) -> tuple[str, ...]:
    """Host header names accepted for a server bound to `host` ('*' = any, for a wildcard address)."""
    if is_wildcard(host):
        return ("*",)
    if is_loopback(host):
        return LOOPBACK_NAMES
    return (host.strip("[]").lower(), *LOOPBACK_NAMES)


def host_name(value: str) -> str:
    """The name in a Host header or an Origin's netloc, without the port (IPv6 without brackets)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(name: str, allowed: Iterable[str]) -> bool:
    return any(a == "*" or a.strip("[]").lower() == name for a in allowed)


def key_matches(headers: dict[str, str], api_key: str) -> bool:
    auth = headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else headers.get("x-api-key", "")
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), api_key.encode("utf-8"))


def refusal(scope: Scope, headers: dict[str, str], allowed: tuple[str, ...], api_key: str | None
            ) -> tuple[int, str] | None:
    """(status, reason) if the request must be refused, else None."""
    if not host_allowed(host_name(headers.get("host", "")), allowed):
        return 400, (f"Host {headers.get('host', '')!r} is not this server's address; allowed: "
                     f"{', '.join(allowed)} (--allowed-hosts)")
    if scope.get("method", "GET") not in SAFE_METHODS and cross_site(headers, allowed):
        return 403, "cross-site requests are refused (the Origin is not this server)"
    path = scope.get("path", "/")
    if api_key and path not in OPEN_PATHS and not path.startswith("/static/") and not key_matches(headers, api_key):
        return 401, "this server needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    return None


def cross_site(headers: dict[str, str], allowed: tuple[str, ...]) -> bool:
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = headers.get("origin")
    if origin is None:
        return False  # not a browser's cross-origin request (curl, scripts, same-origin forms in old browsers)
    netloc = urlsplit(origin).netloc
    same = host_name(netloc) == host_name(headers.get("host", "")) and netloc != ""
    return not (same and host_allowed(host_name(netloc), allowed))


class RequestGuard:
    """ASGI middleware refusing requests by Host, Origin and API key before any endpoint (or body) is read."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...], api_key: str | None) -> None:
        self.app, self.allowed_hosts, self.api_key = app, allowed_hosts, api_key

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refused = refusal(scope, headers, self.allowed_hosts, self.api_key)
        if refused is None:
            return await self.app(scope, receive, send)
        status, reason = refused
        body = json.dumps({"detail": reason, "errors": []}).encode()
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})
