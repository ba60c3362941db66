"""Access tokens for the client API (``--auth``): Nacos-style login, signed tokens and a guard.

Off by default. With ``--auth`` (``NodeSettings.auth``) the API lists the parts of :func:`authenticator_for`:

* ``POST /nacos/v1/auth/login`` and ``POST /nacos/v1/auth/users/login``: ``username`` and ``password``
  (query or form body) -> ``{"accessToken", "tokenTtl", "globalAdmin": true}`` plus
  ``Authorization: Bearer <token>``; a wrong name or password -> 403 ``unknown user!``. Failed logins are
  throttled per client address and per user name (429; see :class:`LoginThrottle`).
* a guard in front of every route except the open ones (``/healthz``, ``/readyz``, ``/metrics``, the
  login routes): the request must carry a valid token in ``Authorization: Bearer <t>`` (looked at first)
  or in the ``accessToken`` parameter, or, without a token, ``username`` and ``password`` parameters that
  would log in (as Nacos's ``NacosAuthManager`` accepts; wrong ones count as failed logins). Otherwise 403
  with Nacos's texts: ``user not found!`` (nothing presented), ``token invalid!``, ``token expired!``,
  ``unknown user!`` (wrong credentials). No header (``User-Agent: Nacos-Server``, ``serverIdentity`` ...)
  grants anything: peers never use this API, they talk over the authenticated peer link.

With auth off, :class:`OpenLogin` answers both login routes: a token for any credentials (nothing checks
tokens then), so that clients configured with a user name and password (nacos-sdk-python 0.1.x logs in
from its constructor and raises when that fails) work against a cluster without auth.

Token format (not a JWT, on purpose: there is no header, so there is no ``alg`` to play games with)::

    base64url(payload) "." base64url(HMAC-SHA256(token_secret, "distro-token-v1." + base64url(payload)))

without padding; ``payload`` is compact JSON ``{"exp": <epoch s>, "iat": <epoch s>, "sub": <user>,
"v": 1}``. The MAC is checked (constant time) before the payload is even decoded; the token secret is
used as its UTF-8 bytes. docs/security.md has the threat model and how to rotate the secret.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cluster.api.params import Params
from cluster.http import Request, Response
from cluster.metrics import family

if TYPE_CHECKING:
    from cluster.node.settings import NodeSettings

log = logging.getLogger("distro.auth")

LOGIN_PATHS = ("/nacos/v1/auth/login", "/nacos/v1/auth/users/login")
# Routes answered without a token (exact paths, after the same trailing-slash trim the router does).
OPEN_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/nacos/v1/console/health/liveness",
        "/nacos/v1/console/health/readiness",
        "/nacos/v1/console/server/state",  # the console asks whether to show its login page
        *LOGIN_PATHS,
    }
)

MIN_SECRET_BYTES = 32
MAX_TOKEN_CHARS = 2048
TOKEN_VERSION = 1
_MAC_PREFIX = b"distro-token-v1."
_MAC_B64_CHARS = 43  # 32 bytes, base64url without padding
_TOKEN_RE = re.compile(rf"([A-Za-z0-9_-]{{1,{MAX_TOKEN_CHARS}}})\.([A-Za-z0-9_-]{{{_MAC_B64_CHARS}}})")

# Nacos's texts (AuthFilter / UserController).
USER_NOT_FOUND = "user not found!"
TOKEN_INVALID = "token invalid!"
TOKEN_EXPIRED = "token expired!"
UNKNOWN_USER = "unknown user!"
TOO_MANY_FAILURES = "too many failed logins from this address or for this user, try again later"


class TokenStatus(enum.Enum):
    """The outcome of checking a token."""

    VALID = "valid"
    INVALID = "invalid"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """``status``, and the token's subject when it is valid."""

    status: TokenStatus
    subject: str = ""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenCodec:
    """Issues and checks access tokens. ``clock`` gives wall-clock seconds (injectable for tests)."""

    def __init__(
        self,
        secret: bytes,
        ttl_s: int,
        *,
        clock: Callable[[], float] = time.time,
        previous_secrets: tuple[bytes, ...] = (),
    ) -> None:
        for candidate in (secret, *previous_secrets):
            if len(candidate) < MIN_SECRET_BYTES:
                raise ValueError(f"the token secret must have at least {MIN_SECRET_BYTES} bytes")
        if ttl_s <= 0:
            raise ValueError("the token lifetime must be positive")
        self._secret = secret
        # Tokens are issued with ``secret`` only; those signed with a previous secret stay valid until they
        # expire, so that rotating the secret does not log every client out at once.
        self._accepted_secrets = (secret, *previous_secrets)
        self.ttl_s = ttl_s
        self._clock = clock

    @staticmethod
    def _mac(payload_b64: str, secret: bytes) -> str:
        digest = hmac.new(secret, _MAC_PREFIX + payload_b64.encode("ascii"), hashlib.sha256).digest()
        return _b64encode(digest)

    def _mac_matches(self, payload_b64: str, mac: str) -> bool:
        offered = mac.encode("ascii")
        matched = False
        for secret in self._accepted_secrets:  # all of them: no early exit to time
            matched |= hmac.compare_digest(self._mac(payload_b64, secret).encode("ascii"), offered)
        return matched

    def issue(self, subject: str) -> str:
        """A token for ``subject`` valid for ``ttl_s`` seconds from now."""
        now = int(self._clock())
        payload = {"exp": now + self.ttl_s, "iat": now, "sub": subject, "v": TOKEN_VERSION}
        payload_b64 = _b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload_b64}.{self._mac(payload_b64, self._secret)}"

    def check(self, token: str) -> TokenCheck:
        """Verify the MAC (constant time) first, then decode the payload and check its expiry."""
        invalid = TokenCheck(TokenStatus.INVALID)
        match = _TOKEN_RE.fullmatch(token) if len(token) <= MAX_TOKEN_CHARS + 1 + _MAC_B64_CHARS else None
        if match is None:
            return invalid
        payload_b64, mac = match.groups()
        if not self._mac_matches(payload_b64, mac):
            return invalid
        try:
            payload: Any = json.loads(_b64decode(payload_b64))
        except (ValueError, binascii.Error, RecursionError):  # Unicode/JSONDecodeError are ValueErrors
            return invalid
        if not isinstance(payload, dict) or payload.get("v") != TOKEN_VERSION:
            return invalid
        subject, expires = payload.get("sub"), payload.get("exp")
        if not isinstance(subject, str) or not subject or type(expires) is not int:
            return invalid
        if self._clock() >= expires:
            return TokenCheck(TokenStatus.EXPIRED, subject)
        return TokenCheck(TokenStatus.VALID, subject)


class _FailureWindows:
    """Failures per key in fixed windows; at most ``max_keys`` keys (the expired, then the oldest, dropped)."""

    def __init__(self, limit: int, window_s: float, max_keys: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._failures: dict[object, tuple[float, int]] = {}  # key -> (window start, failures), oldest first

    def over(self, key: object) -> bool:
        """Whether ``key`` used up its failures in the current window."""
        entry = self._failures.get(key)
        if entry is None:
            return False
        if self._clock() - entry[0] >= self.window_s:
            del self._failures[key]
            return False
        return entry[1] >= self.limit

    def add(self, key: object) -> None:
        """Count one failure."""
        now = self._clock()
        entry = self._failures.pop(key, None)
        if entry is None or now - entry[0] >= self.window_s:
            entry = (now, 0)
            if len(self._failures) >= self.max_keys:
                self._evict(now)
        self._failures[key] = (entry[0], entry[1] + 1)

    def clear(self, key: object) -> None:
        """Forget ``key``'s failures."""
        self._failures.pop(key, None)

    def _evict(self, now: float) -> None:
        for key in [k for k, (start, _) in self._failures.items() if now - start >= self.window_s]:
            del self._failures[key]
        while len(self._failures) >= self.max_keys:
            del self._failures[next(iter(self._failures))]

    def __len__(self) -> int:
        return len(self._failures)


class LoginThrottle:
    """Counts failed logins per client address AND per user name, in fixed windows, on this node.

    A login is refused (429) without its password being checked when its address has had
    ``max_failures`` failures in the window (any user name), or its user name has had
    ``max_user_failures`` (from any address): so guessing from many addresses is capped per user name.
    An address that logged in successfully as a user is trusted for that user for ``trust_s``: it is
    only held to its own failures as that user (``max_failures``), so others' guessing, elsewhere or under
    other names, does not lock it out. Every map is bounded in entries, and each key in bytes (an address,
    or a 16-byte digest of the user name): ``max_addresses`` + ``max_users`` + ``max_trusted`` entries.
    """

    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 60.0,
        *,
        max_user_failures: int = 20,
        trust_s: float = 86_400.0,
        max_addresses: int = 10_000,
        max_users: int = 10_000,
        max_trusted: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.max_user_failures = max_user_failures
        self.window_s = window_s
        self.trust_s = trust_s
        self.max_trusted = max_trusted
        self._clock = clock
        self._by_address = _FailureWindows(max_failures, window_s, max_addresses, clock)
        self._by_user = _FailureWindows(max_user_failures, window_s, max_users, clock)
        self._by_trusted_pair = _FailureWindows(max_failures, window_s, max_trusted, clock)
        self._trusted: dict[tuple[str, bytes], float] = {}  # (address, user digest) -> trusted until

    def _is_trusted(self, pair: tuple[str, bytes]) -> bool:
        until = self._trusted.get(pair)
        if until is None:
            return False
        if self._clock() >= until:
            del self._trusted[pair]
            self._by_trusted_pair.clear(pair)
            return False
        return True

    def blocked(self, address: str, username: str) -> bool:
        """Whether a login as ``username`` from ``address`` is refused without a look at its password."""
        pair = (address, _user_digest(username))
        if self._is_trusted(pair):
            return self._by_trusted_pair.over(pair)
        return self._by_address.over(address) or self._by_user.over(pair[1])

    def failed(self, address: str, username: str) -> None:
        """Record a failed login."""
        pair = (address, _user_digest(username))
        self._by_address.add(address)
        self._by_user.add(pair[1])
        if self._is_trusted(pair):
            self._by_trusted_pair.add(pair)

    def succeeded(self, address: str, username: str) -> None:
        """A correct login: the address is trusted for this user from now on (others' counts stay)."""
        pair = (address, _user_digest(username))
        self._trusted.pop(pair, None)
        while len(self._trusted) >= self.max_trusted:
            del self._trusted[next(iter(self._trusted))]
        self._trusted[pair] = self._clock() + self.trust_s
        self._by_trusted_pair.clear(pair)

    def sizes(self) -> dict[str, int]:
        """Entries held per map (for /metrics)."""
        return {"addresses": len(self._by_address), "users": len(self._by_user), "trusted": len(self._trusted)}

    def __len__(self) -> int:
        return len(self._by_address) + len(self._by_user) + len(self._trusted)


def _user_digest(username: str) -> bytes:
    return hashlib.sha256(username.encode("utf-8", "surrogatepass")).digest()[:16]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    """The login handler and the guard of one node."""

    def __init__(
        self,
        codec: TokenCodec,
        admin_user: str,
        admin_password: str,
        *,
        throttle: LoginThrottle | None = None,
    ) -> None:
        if not admin_user or not admin_password:
            raise ValueError("auth needs an admin user name and password")
        self.codec = codec
        self.admin_user = admin_user
        self._user_digest = _digest(admin_user)
        self._password_digest = _digest(admin_password)
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self.counts: dict[str, int] = dict.fromkeys(
            ("login_ok", "login_denied", "login_throttled", "refused_no_token", "refused_invalid", "refused_expired",
             "credentials_ok", "refused_credentials"),
            0,
        )

    # -- login ------------------------------------------------------------------------------------
    def credentials_ok(self, username: str, password: str) -> bool:
        """Constant-time check of both (digests first, so lengths do not leak; no short-circuit)."""
        user_ok = hmac.compare_digest(_digest(username), self._user_digest)
        password_ok = hmac.compare_digest(_digest(password), self._password_digest)
        return user_ok & password_ok

    async def login(self, request: Request, params: Params) -> Response:
        """POST /nacos/v1/auth/login (and /users/login)."""
        address = request.remote[0]
        username = params.required("username")
        password = params.required("password")
        if self.throttle.blocked(address, username):
            self.counts["login_throttled"] += 1
            return Response.text(429, TOO_MANY_FAILURES)
        if not self.credentials_ok(username, password):
            self.throttle.failed(address, username)
            self.counts["login_denied"] += 1
            log.warning("failed login from %s", address)
            return Response.text(403, UNKNOWN_USER)
        self.throttle.succeeded(address, username)
        self.counts["login_ok"] += 1
        token = self.codec.issue(username)
        response = Response.json({"accessToken": token, "tokenTtl": self.codec.ttl_s, "globalAdmin": True})
        response.headers = [("Authorization", f"Bearer {token}"), ("Cache-Control", "no-store")]
        return response

    # -- the guard --------------------------------------------------------------------------------
    @staticmethod
    def presented_token(request: Request, params: Params) -> str | None:
        """``Authorization: Bearer <t>`` first, then the ``accessToken`` parameter; None if neither."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        token = params.get("accessToken")
        return token or None

    def check(self, token: str) -> TokenCheck:
        """A token's status; a valid token of a user that no longer exists counts as invalid."""
        result = self.codec.check(token)
        if result.status is TokenStatus.VALID and not hmac.compare_digest(
            _digest(result.subject), self._user_digest
        ):
            return TokenCheck(TokenStatus.INVALID)
        return result

    def guard(self, request: Request, params: Params) -> Response | None:
        """None to let the request through, or the 403 answering it."""
        if (request.path.rstrip("/") or "/") in OPEN_PATHS:
            return None
        token = self.presented_token(request, params)
        if token is None:
            if params.get("username") is not None or params.get("password") is not None:
                return self._guard_credentials(request, params)
            self.counts["refused_no_token"] += 1
            return Response.text(403, USER_NOT_FOUND)
        status = self.check(token).status
        if status is TokenStatus.VALID:
            return None
        if status is TokenStatus.EXPIRED:
            self.counts["refused_expired"] += 1
            return Response.text(403, TOKEN_EXPIRED)
        self.counts["refused_invalid"] += 1
        return Response.text(403, TOKEN_INVALID)

    def _guard_credentials(self, request: Request, params: Params) -> Response | None:
        """Nacos's third way to present oneself: ``username`` and ``password`` parameters, checked like a
        login (and throttled with the logins, per address and per user name)."""
        address = request.remote[0]
        username = params.get("username") or ""
        if self.throttle.blocked(address, username):
            self.counts["login_throttled"] += 1
            return Response.text(429, TOO_MANY_FAILURES)
        if self.credentials_ok(username, params.get("password") or ""):
            self.throttle.succeeded(address, username)
            self.counts["credentials_ok"] += 1
            return None
        self.throttle.failed(address, username)
        self.counts["refused_credentials"] += 1
        return Response.text(403, UNKNOWN_USER)

    def render_metrics(self) -> str:
        """Login and refusal counters in Prometheus text format."""
        c = self.counts
        logins = [({"result": result}, c[f"login_{result}"]) for result in ("ok", "denied", "throttled")]
        refusals = [({"reason": reason}, c[f"refused_{reason}"])
                    for reason in ("no_token", "invalid", "expired", "credentials")]
        sizes = [({"map": name}, size) for name, size in self.throttle.sizes().items()]
        return (
            family("distro_auth_logins_total", "counter", "Login attempts by result.", logins)
            + family("distro_auth_refusals_total", "counter", "Requests refused for lack of a valid token, by reason.",
                     refusals)
            + family("distro_auth_throttle_entries", "gauge",
                     "Entries the login throttle holds, by map (each bounded; docs/security.md).", sizes)
        )


OPEN_TOKEN = "auth-disabled"
"""The token handed out while auth is off: nothing checks it (docs/security.md)."""


class OpenLogin:
    """The login routes of a node without auth: any user name and password get :data:`OPEN_TOKEN`."""

    def __init__(self, token_ttl_s: int = 18_000) -> None:
        self.token_ttl_s = token_ttl_s
        self.logins = 0

    async def login(self, request: Request, params: Params) -> Response:
        """POST /nacos/v1/auth/login (and /users/login): both parameters must be present, any values."""
        params.spring_required("username")
        params.spring_required("password")
        self.logins += 1
        body = {"accessToken": OPEN_TOKEN, "tokenTtl": self.token_ttl_s, "globalAdmin": True}
        response = Response.json(body)
        response.headers = [("Authorization", f"Bearer {OPEN_TOKEN}"), ("Cache-Control", "no-store")]
        return response


def authenticator_for(
    settings: NodeSettings,
    *,
    clock: Callable[[], float] = time.time,
    throttle: LoginThrottle | None = None,
) -> Authenticator:
    """The login handler and guard for ``settings`` (the API lists its routes, guard and metrics).

    The caller decides (``if settings.auth:``); this raises ValueError on settings that cannot be safe
    (``parse_settings`` refuses them already, with a message for the operator).
    """
    secret = settings.token_secret.encode()
    if settings.cluster_secret and hmac.compare_digest(secret, settings.cluster_secret.encode()):
        log.warning("the token secret equals the cluster secret: give each its own value (docs/security.md)")
    auth = Authenticator(
        TokenCodec(
            secret,
            settings.token_ttl_s,
            clock=clock,
            previous_secrets=tuple(s.encode() for s in settings.previous_token_secrets),
        ),
        settings.admin_user,
        settings.admin_password,
        throttle=throttle,
    )
    log.info("auth on: the naming API needs an access token (user %s, token lifetime %d s)",
             settings.admin_user, settings.token_ttl_s)
    return auth


__all__ = [
    "LOGIN_PATHS",
    "OPEN_PATHS",
    "OPEN_TOKEN",
    "Authenticator",
    "LoginThrottle",
    "OpenLogin",
    "TokenCheck",
    "TokenCodec",
    "TokenStatus",
    "authenticator_for",
]
