"""The namespaces API of Nacos's console: ``/nacos/v1/console/namespaces`` (GET, POST, PUT, DELETE).

Namespaces are cluster data (:mod:`distro.clusterdata`): a write goes to the owner of the reserved
namespaces key like any write, replicates to every node and, on a node with a data folder, is on disk
before it is answered. The answers are Nacos 1.4.2's:

    GET                                       {"code":200,"message":null,"data":[{namespace, namespaceShowName,
                                              namespaceDesc, quota, configCount, type}]}; public first, as ""
    GET ?show=all&namespaceId=X               {namespace, namespaceShowName, namespaceDesc, quota, configCount, type}
    GET ?checkNamespaceIdExist=true&customNamespaceId=X    true | false
    POST customNamespaceId, namespaceName[, namespaceDesc] true, or false when the id is taken or malformed
                                              (``^[\\w-]+``, at most 128); a blank id gets a random UUID
    PUT namespace, namespaceShowName[, namespaceDesc]      true (also for an unknown namespace, as Nacos)
    DELETE namespaceId                        true (the namespace's services stay, as in Nacos)

Registering into a namespace nobody created works, as in Nacos: the naming API never checks. A missing
parameter is a 400 with Spring's text (Nacos answers it with a 500). docs/api-naming.md has the details.
"""

from __future__ import annotations

import uuid
from typing import Any

from cluster.api.params import Params
from cluster.http import Request, Response
from cluster.node.pump import NodeRuntime
from distro.clusterdata import (
    MAX_NAMESPACE_DESC,
    MAX_NAMESPACE_NAME,
    PUBLIC_NAMESPACE_ID,
    NamespaceInfo,
    valid_custom_namespace_id,
    validate_text,
)
from distro.errors import ValidationError
from distro.requests import ClientRequest, CreateNamespace, DeleteNamespace, UpdateNamespace

__all__ = ["NAMESPACES_PATH", "NamespaceApi"]

NAMESPACES_PATH = "/nacos/v1/console/namespaces"
QUOTA = 200  # Nacos's default quota, shown for every namespace
PUBLIC_DESC = "Public Namespace"


def _row(namespace_id: str, info: NamespaceInfo) -> dict[str, Any]:
    return {
        "namespace": namespace_id,
        "namespaceShowName": info.name,
        "namespaceDesc": info.desc,
        "quota": QUOTA,
        "configCount": 0,  # no config service here
        "type": 2,  # Nacos: 0 global (public), 2 custom
    }


def _public(show_name: str) -> dict[str, Any]:
    return {
        "namespace": "",
        "namespaceShowName": show_name,
        "namespaceDesc": PUBLIC_DESC,
        "quota": QUOTA,
        "configCount": 0,
        "type": 0,
    }


def _required(params: Params, name: str) -> str:
    """A parameter Spring requires: present (it may be empty), else Spring's text (as a 400)."""
    value = params.get(name)
    if value is None:
        raise ValidationError(f"Required String parameter '{name}' is not present")
    return value


class NamespaceApi:
    """The handlers of ``/nacos/v1/console/namespaces``; the API lists them in its route table."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime
        self.node = runtime.node

    async def get(self, request: Request, params: Params) -> Response:
        """GET: the list, one namespace (``show=all``), or whether an id is taken."""
        if params.get("checkNamespaceIdExist") == "true":
            namespace_id = _required(params, "customNamespaceId")
            return Response.json(bool(namespace_id) and self._exists(namespace_id))
        if params.get("show") == "all":
            return self._detail(_required(params, "namespaceId"))
        rows = [_public("public")] + [_row(ns, info) for ns, info in self.node.namespaces()]
        return Response.json({"code": 200, "message": None, "data": rows})

    def _exists(self, namespace_id: str) -> bool:
        return namespace_id == PUBLIC_NAMESPACE_ID or namespace_id in dict(self.node.namespaces())

    def _detail(self, namespace_id: str) -> Response:
        if namespace_id in ("", PUBLIC_NAMESPACE_ID):
            return Response.json(_public("Public"))
        info = dict(self.node.namespaces()).get(namespace_id)
        if info is None:
            return Response.text(404, f"namespaceId [ {namespace_id} ] not exist")
        return Response.json(_row(namespace_id, info))

    async def create(self, request: Request, params: Params) -> Response:
        """POST: create a namespace (``customNamespaceId`` blank: a random UUID)."""
        namespace_id = _required(params, "customNamespaceId") or str(uuid.uuid4())
        name = validate_text("namespaceName", _required(params, "namespaceName"), MAX_NAMESPACE_NAME)
        desc = validate_text("namespaceDesc", params.get("namespaceDesc") or "", MAX_NAMESPACE_DESC)
        if namespace_id == PUBLIC_NAMESPACE_ID or not valid_custom_namespace_id(namespace_id):
            return Response.json(False)  # the owner would say the same
        return await self._submit(CreateNamespace(namespace_id, name, desc))

    async def update(self, request: Request, params: Params) -> Response:
        """PUT: a namespace's show name and description."""
        namespace_id = _required(params, "namespace")
        name = validate_text("namespaceShowName", _required(params, "namespaceShowName"), MAX_NAMESPACE_NAME)
        desc = validate_text("namespaceDesc", params.get("namespaceDesc") or "", MAX_NAMESPACE_DESC)
        if not valid_custom_namespace_id(namespace_id):
            return Response.json(True)  # no such namespace can exist: nothing to do, true as in Nacos
        return await self._submit(UpdateNamespace(namespace_id, name, desc))

    async def delete(self, request: Request, params: Params) -> Response:
        """DELETE: remove a namespace (not its services)."""
        namespace_id = _required(params, "namespaceId")
        if not valid_custom_namespace_id(namespace_id):
            return Response.json(True)  # public, or an id no namespace can have: nothing to delete
        return await self._submit(DeleteNamespace(namespace_id))

    async def _submit(self, request: ClientRequest) -> Response:
        result = await self.runtime.submit(request)
        if result.status == 200 and result.body in ("true", "false"):
            return Response.json(result.body == "true")
        if isinstance(result.body, str):
            return Response.text(result.status, result.body)
        return Response.json(result.body, result.status)
