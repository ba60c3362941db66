"""The node's HTTP handler with the console's static files in front of the API.

The static files hold no registry data, so they are answered here, before the API's guards: a login page must
load without a token, and a starting node must still show its console. Every other request, the console's own
data endpoints included, goes to the API and through its guards unchanged.
"""

from __future__ import annotations

from cluster.console.assets import StaticAssets
from cluster.http import Deferred, FastHandler, Handler, Request, Response


class ConsoleFront:
    """An HTTP handler: the console's files from ``assets``, everything else from ``api``."""

    def __init__(self, api: Handler, assets: StaticAssets, fast: FastHandler | None = None) -> None:
        self.api = api
        self.assets = assets
        self.fast = fast

    async def __call__(self, request: Request) -> Response:
        """The handler."""
        if self.assets.handles(request.method.upper(), request.path):
            return self.assets.respond(request)
        return await self.api(request)

    def answer_now(self, request: Request) -> Response | Deferred | None:
        """The fast handler (``cluster.http.FastHandler``): the API's, for what is not a console file."""
        if self.fast is None or self.assets.handles(request.method.upper(), request.path):
            return None
        return self.fast(request)


__all__ = ["ConsoleFront"]
