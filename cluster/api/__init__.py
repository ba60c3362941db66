"""The Nacos v1 HTTP API product, served by :mod:`cluster.http` on a node's port.

    routes     NamingApi: the route table and the guards, listed where the API is built
    params     Nacos parameter parsing (aliases, booleans, numbers, Nacos's error texts)
    render     the one renderer of the ``instance/list`` body (HTTP, UDP push and watch use it)
    readiness  the guard that answers naming reads 503 until the node is ready
    auth       token auth: login routes and the token guard
    push       UDP push to Nacos 1.x subscribers
    watch      HTTP watch: a long-polling ``instance/list``

Nothing is imported here, so importing one submodule never drags in the others.
"""

__all__ = ["auth", "params", "push", "readiness", "render", "routes", "watch"]
