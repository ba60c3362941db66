"""Request/response pairs of the Nacos 1.4.2 naming API, read from its source, one per endpoint and error case.

Each :class:`Case` is a request (after optional setup requests), the status and body Nacos 1.4.2 answers,
and where in Nacos's source that answer comes from (``N/`` = ``naming/src/main/java/com/alibaba/nacos/naming/``,
``C/`` = ``console/src/main/java/com/alibaba/nacos/console/``, ``CORE/`` = ``core/src/main/java/com/alibaba/nacos/core/``).
A case whose ``differs`` is set is a deliberate difference: the expectation is ours, and ``differs`` says
what Nacos does instead (docs/api-naming.md has the table and the reasons).

Bodies: a ``str`` is compared exactly (a text answer); a dict is a JSON object whose listed keys must match
(extra keys are our extensions and allowed), recursively; a list must match element by element;
:class:`Exact` compares a JSON value exactly; :data:`ANY` matches anything present; :data:`INT` any integer
a JSON reader keeps exactly (within 2^53). ``{svc}`` stands for the case's own service name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ANY", "CASES", "INT", "Call", "Case", "Exact"]

NS = "/nacos/v1/ns"
JAVA = {"User-Agent": "Nacos-Java-Client:v1.4.2"}
PYTHON = {"User-Agent": "Nacos-Python-Client:v0.1.17"}


class _Any:
    def __repr__(self) -> str:
        return "ANY"


class _Int:
    def __repr__(self) -> str:
        return "INT"


ANY: Any = _Any()
INT: Any = _Int()


@dataclass(frozen=True)
class Exact:
    """A JSON value that must be equal, keys and all."""

    value: Any


@dataclass(frozen=True)
class Call:
    """One HTTP request: ``params`` go in the query string, ``form`` (when given) in a form body."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """A request, Nacos 1.4.2's answer, and where that answer comes from."""

    id: str
    call: Call
    status: int
    body: Any
    source: str
    setup: tuple[Call, ...] = ()
    differs: str = ""
    auth: bool = False


def _reg(**extra: str) -> Call:
    return Call("POST", f"{NS}/instance", {"serviceName": "{svc}", "ip": "10.9.0.1", "port": "80", **extra})


def _get(path: str, **params: str) -> Call:
    return Call("GET", f"{NS}{path}", params)


INSTANCE = {"serviceName": "{svc}", "ip": "10.9.0.1", "port": "80"}

_INSTANCES = [
    Case("register", _reg(), 200, "ok", "N/controllers/InstanceController.register"),
    Case("register-no-ip", Call("POST", f"{NS}/instance", {"serviceName": "{svc}", "port": "80"}), 400,
         "Param 'ip' is required.", "CORE/utils/WebUtils.required"),
    Case("register-no-service", Call("POST", f"{NS}/instance", {"ip": "10.9.0.1", "port": "80"}), 400,
         "Param 'serviceName' is required.", "CORE/utils/WebUtils.required"),
    Case("register-weight", _reg(weight="20000"), 400,
         "instance format invalid: The weights range from 0.0 to 10000.0", "N/core/Instance.validate"),
    Case("register-bad-ip", _reg(ip="999.1.1.1"), 400,
         "instance format invalid: Your IP address is spelled incorrectly", "N/core/Instance.validate"),
    Case("register-bad-metadata", _reg(metadata="{x"), 400, "metadata format incorrect:{x",
         "N/misc/UtilsAndCommons.parseMetadata"),
    Case("register-bad-cluster", _reg(clusterName="a_b"), 400,
         "cluster name can only have these characters: 0-9a-zA-Z-, current: a_b", "N/core/Cluster.validate"),
    Case("register-bad-name", Call("POST", f"{NS}/instance", {**INSTANCE, "serviceName": "a!b"}), 400,
         "dom name can only have these characters: 0-9a-zA-Z-._:, current: DEFAULT_GROUP@@a!b",
         "N/core/Service.validate"),
    Case("register-empty-group", Call("POST", f"{NS}/instance", {**INSTANCE, "serviceName": "@@x"}), 400,
         "Param 'serviceName' is illegal, groupName can't be empty",
         "api/.../naming/utils/NamingUtils.checkServiceNameFormat"),
    Case("register-persistent", _reg(ephemeral="false"), 400,
         "persistent instances are not supported: this registry keeps ephemeral instances only "
         "(they live by heartbeats); register with ephemeral=true", "N/controllers/InstanceController.register",
         differs="Nacos keeps persistent instances in its Raft store"),
    Case("deregister-unknown", Call("DELETE", f"{NS}/instance", INSTANCE), 200, "ok",
         "N/controllers/InstanceController.deregister (an unknown service is ok)"),
    Case("deregister", Call("DELETE", f"{NS}/instance", INSTANCE), 200, "ok",
         "N/controllers/InstanceController.deregister", setup=(_reg(),)),
    Case("update-replaces", _get("/instance", **INSTANCE), 200,
         {"ip": "10.9.0.1", "port": 80, "weight": 1.0, "metadata": Exact({})},
         "N/controllers/InstanceController.update -> parseInstance: fields not given take their defaults",
         setup=(_reg(weight="3", metadata='{"a":"1"}'), Call("PUT", f"{NS}/instance", INSTANCE))),
    Case("update-java-no-service", Call("PUT", f"{NS}/instance", INSTANCE, headers=JAVA), 400,
         "service not found, namespace: public, service: DEFAULT_GROUP@@{svc}",
         "N/core/ServiceManager.updateInstance (Java client >= 1.0.0)"),
    Case("update-java-no-instance", Call("PUT", f"{NS}/instance", {**INSTANCE, "ip": "10.9.0.2"}, headers=JAVA),
         400, "instance not exist: 10.9.0.2:80:unknown:DEFAULT_1.0_true_false_DEFAULT",
         "N/core/ServiceManager.updateInstance, Instance.toString", setup=(_reg(),)),
    Case("update-other-agent-registers", Call("PUT", f"{NS}/instance", INSTANCE, headers=PYTHON), 200, "ok",
         "N/controllers/InstanceController.update (any other agent: registerInstance)"),
    Case("patch-unknown", Call("PATCH", f"{NS}/instance", INSTANCE), 400, "instance not found",
         "N/controllers/InstanceController.patch"),
    Case("detail", _get("/instance", **INSTANCE), 200,
         {"service": "DEFAULT_GROUP@@{svc}", "ip": "10.9.0.1", "port": 80, "clusterName": "DEFAULT", "weight": 1.0,
          "healthy": True, "instanceId": "10.9.0.1#80#DEFAULT#DEFAULT_GROUP@@{svc}", "metadata": {}},
         "N/controllers/InstanceController.detail", setup=(_reg(),)),
    Case("detail-no-service", _get("/instance", **INSTANCE), 404, "no service DEFAULT_GROUP@@{svc} found!",
         "N/controllers/InstanceController.detail"),
    Case("detail-no-cluster", _get("/instance", **INSTANCE, clusterName="c9"), 404,
         "no ips found for cluster c9 in service DEFAULT_GROUP@@{svc}", "N/controllers/InstanceController.detail",
         setup=(_reg(),)),
    Case("detail-no-ip", _get("/instance", **{**INSTANCE, "ip": "10.9.0.7"}), 404, "no matched ip found!",
         "N/controllers/InstanceController.detail", setup=(_reg(),)),
]

_LISTS = [
    Case("list-unknown", _get("/instance/list", serviceName="{svc}"), 200,
         {"name": "DEFAULT_GROUP@@{svc}", "clusters": "", "cacheMillis": 3000, "hosts": []},
         "N/controllers/InstanceController.doSrvIpxt (no service)"),
    Case("list-java", Call("GET", f"{NS}/instance/list", {"serviceName": "{svc}"}, headers=JAVA), 200,
         {"dom": "DEFAULT_GROUP@@{svc}", "name": "DEFAULT_GROUP@@{svc}", "cacheMillis": 3000, "lastRefTime": INT,
          "checksum": ANY, "useSpecifiedURL": False, "clusters": "", "env": ANY, "metadata": {},
          "hosts": [{"ip": "10.9.0.1", "port": 80, "valid": True, "healthy": True, "marked": False,
                     "instanceId": "10.9.0.1#80#DEFAULT#DEFAULT_GROUP@@{svc}", "metadata": {}, "enabled": True,
                     "weight": 1.0, "clusterName": "DEFAULT", "serviceName": "DEFAULT_GROUP@@{svc}",
                     "ephemeral": True}]},
         "N/controllers/InstanceController.doSrvIpxt (Java client >= 1.0.0: grouped names)", setup=(_reg(),)),
    Case("list-other-agent", Call("GET", f"{NS}/instance/list", {"serviceName": "{svc}"}, headers=PYTHON), 200,
         {"dom": "{svc}", "hosts": [{"serviceName": "{svc}"}]},
         "N/controllers/InstanceController.doSrvIpxt (other agents: bare names)", setup=(_reg(),)),
    Case("list-is-check", _get("/instance/list", serviceName="{svc}", isCheck="true"), 200, Exact({}),
         "N/controllers/InstanceController.doSrvIpxt (isCheck)", setup=(_reg(),)),
    Case("list-udp-port-abc", _get("/instance/list", serviceName="{svc}", udpPort="abc"), 400,
         'For input string: "abc"', "N/controllers/InstanceController.list: Integer.parseInt"),
    Case("list-healthy-only-lenient", _get("/instance/list", serviceName="{svc}", healthyOnly="yes"), 200,
         {"hosts": [{"ip": "10.9.0.1", "healthy": False}, {"ip": "10.9.0.2", "healthy": True}]},
         "N/controllers/InstanceController.list: Boolean.parseBoolean", setup=(
             _reg(ip="10.9.0.1", healthy="false"), _reg(ip="10.9.0.2"))),
    Case("list-clusters-lenient", _get("/instance/list", serviceName="{svc}", clusters="x_y,,DEFAULT"), 200,
         {"hosts": [{"ip": "10.9.0.1"}]}, "N/core/Service.srvIPs: unknown cluster names match nothing",
         setup=(_reg(),)),
    Case("list-protection", _get("/instance/list", serviceName="{svc}"), 200,
         {"hosts": [{"ip": "10.9.0.1", "healthy": True}]},
         "N/controllers/InstanceController.doSrvIpxt: healthy share <= protectThreshold (0.0) returns all",
         setup=(_reg(healthy="false"),)),
    Case("list-snowflake-ids", _get("/instance/list", serviceName="{svc}"), 200,
         {"hosts": [{"ip": "10.9.0.1", "instanceId": "0", "instanceIdGenerator": "snowflake"},
                    {"ip": "10.9.0.2", "instanceId": "1", "instanceIdGenerator": "snowflake"}]},
         "N/core/Instance.generateSnowflakeInstanceId, N/core/ServiceManager.updateIpAddresses (ids kept)",
         setup=(_reg(metadata='{"preserved.instance.id.generator":"snowflake"}'),
                _reg(ip="10.9.0.2", metadata='{"preserved.instance.id.generator":"snowflake"}'),
                _reg(weight="2", metadata='{"preserved.instance.id.generator":"snowflake"}'))),
    Case("srv-ipxt", _get("/api/srvIPXT", dom="{svc}"), 200, {"hosts": [{"ip": "10.9.0.1"}]},
         "N/controllers/ApiController.srvIpxt (DEFAULT_GROUP@@dom)", setup=(_reg(),)),
    Case("srv-ipxt-no-dom", _get("/api/srvIPXT"), 400, "Param 'dom' is required.",
         "N/controllers/ApiController.srvIpxt"),
]

BEAT = {"serviceName": "{svc}", "ip": "10.9.0.1", "port": "80"}
_BEATS = [
    Case("beat-light-unknown", Call("PUT", f"{NS}/instance/beat", BEAT), 200,
         Exact({"clientBeatInterval": 5000, "code": 20404}), "N/controllers/InstanceController.beat"),
    Case("beat-light", Call("PUT", f"{NS}/instance/beat", BEAT), 200,
         Exact({"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True}),
         "N/controllers/InstanceController.beat", setup=(_reg(),)),
    Case("beat-full-registers", Call("PUT", f"{NS}/instance/beat", {"serviceName": "{svc}"},
                                     form={"beat": '{"ip":"10.9.0.1","port":80,"cluster":"c1","weight":2}'}),
         200, {"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True},
         "N/controllers/InstanceController.beat (data compensation)"),
    Case("beat-after-deregister", Call("PUT", f"{NS}/instance/beat", BEAT), 200,
         {"clientBeatInterval": 5000, "code": 10200}, "N/controllers/InstanceController.beat",
         setup=(_reg(), Call("DELETE", f"{NS}/instance", INSTANCE)),
         differs="Nacos answers code 20404 and the Java client registers the instance it has just removed"),
    Case("client-beat", Call("PUT", f"{NS}/api/clientBeat", {"dom": "{svc}", "ip": "10.9.0.1", "port": "80"}), 200,
         {"code": 10200}, "N/controllers/ApiController.clientBeat", setup=(_reg(),)),
]

SERVICE = {"serviceName": "{svc}"}
_SERVICES = [
    Case("service-create", Call("POST", f"{NS}/service", {**SERVICE, "protectThreshold": "0.5"}), 200, "ok",
         "N/controllers/ServiceController.create"),
    Case("service-create-twice", Call("POST", f"{NS}/service", SERVICE), 400,
         "specified service already exists, serviceName : DEFAULT_GROUP@@{svc}",
         "N/controllers/ServiceController.create", setup=(Call("POST", f"{NS}/service", SERVICE),)),
    Case("service-update-missing", Call("PUT", f"{NS}/service", {**SERVICE, "protectThreshold": "0.1"}), 400,
         "service DEFAULT_GROUP@@{svc} not found!", "N/controllers/ServiceController.update"),
    Case("service-update-no-threshold", Call("PUT", f"{NS}/service", SERVICE), 400,
         "Param 'protectThreshold' is required.", "N/controllers/ServiceController.update: WebUtils.required"),
    Case("service-delete-missing", Call("DELETE", f"{NS}/service", SERVICE), 400,
         "specified service not exist, serviceName : DEFAULT_GROUP@@{svc}",
         "N/core/ServiceManager.easyRemoveService"),
    Case("service-get", _get("/service", serviceName="{svc}"), 200,
         {"name": "{svc}", "groupName": "DEFAULT_GROUP", "namespaceId": "public", "protectThreshold": 0.5,
          "metadata": {"k": "v"}, "selector": {"type": "none"}, "clusters": []},
         "N/controllers/ServiceController.detail",
         setup=(Call("POST", f"{NS}/service", {**SERVICE, "protectThreshold": "0.5", "metadata": "k=v"}),)),
    Case("service-get-missing", _get("/service", serviceName="{svc}"), 404,
         "service DEFAULT_GROUP@@{svc} is not found!", "N/controllers/ServiceController.detail"),
    Case("service-list", _get("/service/list", pageNo="1", pageSize="10", namespaceId="{svc}"), 200,
         Exact({"doms": ["{svc}"], "count": 1}), "N/controllers/ServiceController.list (one group: bare names)",
         setup=(_reg(namespaceId="{svc}"), _reg(namespaceId="{svc}", groupName="G2"))),
    Case("service-list-all-groups", _get("/service/list", pageNo="1", pageSize="10", namespaceId="{svc}",
                                         groupName="*"), 200,
         Exact({"doms": ["DEFAULT_GROUP@@{svc}", "G2@@{svc}"], "count": 2}),
         "N/controllers/ServiceController.list (groupName=*: only '*@@' is stripped, names stay grouped)",
         setup=(_reg(namespaceId="{svc}"), _reg(namespaceId="{svc}", groupName="G2"))),
    Case("service-list-empty", _get("/service/list", pageNo="1", pageSize="10", namespaceId="{svc}"), 200,
         Exact({"doms": [], "count": 0}), "N/controllers/ServiceController.list (empty namespace)"),
    Case("service-list-no-page", _get("/service/list", pageSize="10"), 400, "Param 'pageNo' is required.",
         "N/controllers/ServiceController.list: WebUtils.required"),
    Case("service-names", _get("/service/names", namespaceId="{svc}"), 200,
         Exact({"services": {"{svc}": ["{svc}"]}, "count": 1}), "N/controllers/ServiceController.searchService",
         setup=(_reg(namespaceId="{svc}"),)),
    Case("all-dom-names", _get("/api/allDomNames"), 200, {"count": INT, "doms": {"{svc}": ["{svc}"]}},
         "N/controllers/ApiController.allDomNames", setup=(_reg(namespaceId="{svc}"),)),
    Case("subscribers-none", _get("/service/subscribers", serviceName="{svc}"), 200,
         {"subscribers": [], "count": 0}, "N/controllers/ServiceController.subscribers"),
    Case("subscribers", _get("/service/subscribers", serviceName="{svc}"), 200,
         {"subscribers": [{"addrStr": "127.0.0.1:40404", "agent": "Nacos-Java-Client:v1.4.2", "app": "",
                           "ip": "127.0.0.1", "namespaceId": "public", "serviceName": "DEFAULT_GROUP@@{svc}"}],
          "count": 1},
         "N/controllers/ServiceController.subscribers, N/push/PushService.getClientsFuzzy",
         setup=(Call("GET", f"{NS}/instance/list", {"serviceName": "{svc}", "udpPort": "40404",
                                                    "clientIP": "127.0.0.1"}, headers=JAVA),)),
]

_CATALOG = [
    Case("catalog-services", _get("/catalog/services", namespaceId="{svc}", pageNo="1", pageSize="10"), 200,
         {"serviceList": [{"name": "{svc}", "groupName": "DEFAULT_GROUP", "clusterCount": 1, "ipCount": 2,
                           "healthyInstanceCount": 1, "triggerFlag": "false"}], "count": 1},
         "N/controllers/CatalogController.listDetail",
         setup=(_reg(namespaceId="{svc}"), _reg(namespaceId="{svc}", ip="10.9.0.2", healthy="false"))),
    Case("catalog-services-with-instances", _get("/catalog/services", namespaceId="{svc}", withInstances="true",
                                                 pageNo="1", pageSize="10"), 200,
         [{"serviceName": "{svc}", "groupName": "DEFAULT_GROUP", "metadata": {},
           "clusterMap": {"DEFAULT": {"hosts": [{"ip": "10.9.0.1", "port": 80, "valid": True, "weight": 1.0,
                                                 "enabled": True, "metadata": {}}]}}}],
         "N/controllers/CatalogController.listDetail (withInstances)", setup=(_reg(namespaceId="{svc}"),),
         differs="Nacos pages this form from pageNo instead of pageNo - 1 (page 1 skips the first page)"),
    Case("catalog-services-has-ip-count", _get("/catalog/services", namespaceId="{svc}", hasIpCount="true"), 200,
         {"serviceList": [{"name": "{svc}"}], "count": 1}, "N/core/ServiceManager.getPagedService (hasIpCount)",
         setup=(_reg(namespaceId="{svc}"), Call("POST", f"{NS}/service", {"serviceName": "e", "namespaceId": "{svc}"}))),
    Case("catalog-services-instance", _get("/catalog/services", namespaceId="{svc}", instance="10.9.0.1:80"),
         200, {"serviceList": [{"name": "{svc}"}], "count": 1},
         "N/core/ServiceManager.getPagedService (containedInstance)",
         setup=(_reg(namespaceId="{svc}"), _reg(namespaceId="{svc}", serviceName="other", ip="10.9.0.2"))),
    Case("catalog-services-names", _get("/catalog/services", namespaceId="{svc}", serviceNameParam="th",
                                        groupNameParam="DEF"), 200,
         {"serviceList": [{"name": "other"}], "count": 1},
         "N/core/ServiceManager.getPagedService: .*group.*@@.*name.*",
         setup=(_reg(namespaceId="{svc}"), _reg(namespaceId="{svc}", serviceName="other"))),
    Case("catalog-instances", Call("GET", f"{NS}/catalog/instances", {
        "serviceName": "{svc}", "clusterName": "DEFAULT", "pageNo": "1", "pageSize": "10"}), 200,
         {"list": [{"instanceId": "10.9.0.1#80#DEFAULT#DEFAULT_GROUP@@{svc}", "ip": "10.9.0.1", "port": 80,
                    "weight": 1.0, "healthy": True, "enabled": True, "ephemeral": True, "clusterName": "DEFAULT",
                    "serviceName": "DEFAULT_GROUP@@{svc}", "metadata": {}, "lastBeat": INT, "marked": False,
                    "instanceHeartBeatInterval": 5000, "instanceHeartBeatTimeOut": 15000,
                    "ipDeleteTimeout": 30000, "instanceIdGenerator": "simple"}], "count": 1},
         "N/controllers/CatalogController.instanceList", setup=(_reg(),)),
    Case("catalog-instances-no-cluster", Call("GET", f"{NS}/catalog/instances", {
        "serviceName": "{svc}", "pageNo": "1", "pageSize": "10"}), 400, "Parameter 'clusterName' is missing",
         "N/exception/ResponseExceptionHandler.handleMissingParams"),
    Case("catalog-instances-no-service", Call("GET", f"{NS}/catalog/instances", {
        "serviceName": "{svc}", "clusterName": "DEFAULT", "pageNo": "1", "pageSize": "10"}), 404,
         "service DEFAULT_GROUP@@{svc} is not found!", "N/controllers/CatalogController.instanceList"),
    Case("catalog-instances-unknown-cluster", Call("GET", f"{NS}/catalog/instances", {
        "serviceName": "{svc}", "clusterName": "c9", "pageNo": "1", "pageSize": "10"}), 404,
         "cluster c9 is not found!", "N/controllers/CatalogController.instanceList", setup=(_reg(),)),
    Case("catalog-service", _get("/catalog/service", serviceName="{svc}"), 200,
         {"service": {"name": "{svc}", "protectThreshold": 0.0, "groupName": "DEFAULT_GROUP",
                      "selector": {"type": "none"}, "metadata": {}},
          "clusters": [{"name": "DEFAULT", "serviceName": "DEFAULT_GROUP@@{svc}", "healthChecker": ANY,
                        "metadata": {}, "defaultPort": 80, "useIPPort4Check": True}]},
         "N/controllers/CatalogController.serviceDetail", setup=(_reg(),)),
    Case("catalog-service-missing", _get("/catalog/service", serviceName="{svc}"), 404,
         "service DEFAULT_GROUP@@{svc} is not found!", "N/controllers/CatalogController.serviceDetail"),
]

_OPERATOR = [
    Case("switches", _get("/operator/switches"), 200,
         {"name": "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00", "defaultPushCacheMillis": INT,
          "clientBeatInterval": 5000, "defaultCacheMillis": INT, "distroEnabled": True, "lightBeatEnabled": True,
          "defaultInstanceEphemeral": True, "pushJavaVersion": ANY, "limitedUrlMap": {},
          "overriddenServerStatus": None}, "N/misc/SwitchDomain (Spring's JSON: nulls included)"),
    Case("switches-put", Call("PUT", f"{NS}/operator/switches", {"entry": "pushVersion", "value": "go:1.2.3"}),
         200, "ok", "N/misc/SwitchManager.update"),
    Case("switches-put-too-small", Call("PUT", f"{NS}/operator/switches",
                                        {"entry": "defaultCacheMillis", "value": "10"}), 400,
         "min default cache time  is too small(<1000)", "N/misc/SwitchManager.update"),
    Case("switches-put-no-entry", Call("PUT", f"{NS}/operator/switches", {"value": "1"}), 400,
         "Parameter 'entry' is missing", "N/exception/ResponseExceptionHandler.handleMissingParams"),
    Case("switches-put-unknown", Call("PUT", f"{NS}/operator/switches", {"entry": "nope", "value": "1"}), 400,
         ANY, "N/misc/SwitchManager.update", differs="Nacos answers ok and changes nothing"),
    Case("metrics", _get("/operator/metrics"), 200,
         {"status": "UP", "serviceCount": INT, "instanceCount": INT, "raftNotifyTaskCount": INT,
          "responsibleServiceCount": INT, "responsibleInstanceCount": INT, "cpu": ANY, "load": ANY, "mem": ANY},
         "N/controllers/OperatorController.metrics"),
    Case("servers", _get("/operator/servers"), 200,
         {"servers": [{"ip": "127.0.0.1", "port": INT, "state": "UP", "address": ANY, "extendInfo": ANY}]},
         "N/controllers/OperatorController.getHealthyServerList"),
    Case("distro-server", _get("/operator/distro/server", serviceName="{svc}"), 200,
         {"responsibleServer": ANY}, "N/controllers/OperatorController.getResponsibleServer4Service",
         setup=(_reg(),)),
    Case("distro-server-unknown", _get("/operator/distro/server", serviceName="{svc}"), 200,
         {"responsibleServer": ANY}, "N/controllers/OperatorController.getResponsibleServer4Service",
         differs="Nacos answers 400 'service not found' for a service it does not hold"),
    Case("cluster-state", _get("/operator/cluster/state"), 200,
         {"ip": ANY, "term": 0, "leaderDueMs": INT, "heartbeatDueMs": INT, "state": "FOLLOWER"},
         "N/controllers/OperatorController.getClusterStates (RaftPeer)",
         differs="there is no Raft: term 0 and FOLLOWER on every node"),
    Case("push-state", _get("/operator/push/state"), 200, {"succeed": INT, "total": INT, "ratio": ANY},
         "N/controllers/OperatorController.pushState"),
]

_CONSOLE_AND_MISC = [
    Case("liveness", Call("GET", "/nacos/v1/console/health/liveness"), 200, "OK",
         "C/controller/HealthController.liveness"),
    Case("readiness", Call("GET", "/nacos/v1/console/health/readiness"), 200, "OK",
         "C/controller/HealthController.readiness"),
    Case("login-auth-off", Call("POST", "/nacos/v1/auth/login", form={"username": "any", "password": "thing"}),
         200, {"accessToken": ANY, "tokenTtl": 18000, "globalAdmin": True}, "C/controller/UserController.login",
         differs="Nacos checks the user even with auth off; here any credentials get a token nothing checks"),
    Case("login-no-password", Call("POST", "/nacos/v1/auth/login", {"username": "any"}), 400,
         "Parameter 'password' is missing", "C/controller/UserController.login (@RequestParam)"),
    Case("unknown-route", _get("/nope"), 501, "no such api:GET:/nacos/v1/ns/nope", "N/web/DistroFilter"),
    Case("peer-internal-route", Call("PUT", f"{NS}/distro/datum"), 501, "no such api:PUT:/nacos/v1/ns/distro/datum",
         "N/controllers/DistroController.onSyncDatum",
         differs="peers talk over the authenticated peer link only; Nacos's peer HTTP routes do not exist"),
]

_AUTH = [
    Case("auth-no-token", _get("/instance/list", serviceName="{svc}"), 403, "user not found!",
         "C/security/nacos/NacosAuthManager.login", auth=True),
    Case("auth-bad-token", _get("/instance/list", serviceName="{svc}", accessToken="junk"), 403, "token invalid!",
         "C/security/nacos/NacosAuthManager.login", auth=True),
    Case("auth-credentials", _get("/instance/list", serviceName="{svc}", username="nacos",
                                  password="conformance-password"), 200, {"hosts": []},
         "C/security/nacos/NacosAuthManager.resolveTokenFromUser", auth=True),
    Case("auth-wrong-credentials", _get("/instance/list", serviceName="{svc}", username="nacos", password="no"),
         403, "unknown user!", "C/security/nacos/NacosAuthManager.resolveTokenFromUser", auth=True),
    Case("auth-login", Call("POST", "/nacos/v1/auth/login", form={"username": "nacos",
                                                                   "password": "conformance-password"}),
         200, {"accessToken": ANY, "tokenTtl": 18000, "globalAdmin": True}, "C/controller/UserController.login",
         auth=True),
    Case("auth-login-wrong", Call("POST", "/nacos/v1/auth/login", form={"username": "nacos", "password": "no"}),
         403, "unknown user!", "C/security/nacos/NacosAuthManager.resolveTokenFromUser", auth=True),
    Case("auth-token", _get("/instance/list", serviceName="{svc}", accessToken="{token}"), 200, {"hosts": []},
         "CORE/auth/AuthFilter", auth=True),
    Case("auth-probe-open", Call("GET", "/nacos/v1/console/health/liveness"), 200, "OK",
         "C/controller/HealthController.liveness", auth=True),
]

NAMESPACES = "/nacos/v1/console/namespaces"
_NS_FORM = {"customNamespaceId": "{svc}", "namespaceName": "Name of {svc}", "namespaceDesc": "about {svc}"}
_CREATE_NS = Call("POST", NAMESPACES, form=_NS_FORM)
_CLUSTER_FORM = {"serviceName": "{svc}", "clusterName": "c1", "checkPort": "8080", "useInstancePort4Check": "false",
                 "healthChecker": '{"type":"HTTP","path":"/health","headers":"","expectedResponseCode":200}',
                 "metadata": "k=v"}
_CREATE_SVC = Call("POST", f"{NS}/service", {"serviceName": "{svc}"})

_CLUSTER_DATA = [
    Case("namespace-create", _CREATE_NS, 200, Exact(True), "C/controller/NamespaceController.createNamespace"),
    Case("namespace-create-taken", _CREATE_NS, 200, Exact(False),
         "C/controller/NamespaceController.createNamespace (tenantInfoCountByTenantId > 0)", setup=(_CREATE_NS,)),
    Case("namespace-create-bad-id", Call("POST", NAMESPACES, form={**_NS_FORM, "customNamespaceId": "a b"}), 200,
         Exact(False), "C/controller/NamespaceController.createNamespace (namespaceIdCheckPattern ^[\\w-]+)"),
    Case("namespace-create-public", Call("POST", NAMESPACES, form={**_NS_FORM, "customNamespaceId": "public"}), 200,
         Exact(False), "C/controller/NamespaceController.createNamespace",
         differs="Nacos creates a namespace with the id public; here that is the naming API's default namespace"),
    Case("namespace-create-no-name", Call("POST", NAMESPACES, form={"customNamespaceId": "{svc}"}), 400,
         "Required String parameter 'namespaceName' is not present",
         "C/controller/NamespaceController.createNamespace (@RequestParam)",
         differs="Nacos answers 500 'caused: Required String parameter ... is not present;'"),
    Case("namespace-list", Call("GET", NAMESPACES), 200,
         {"code": 200, "message": None, "data": ANY}, "C/controller/NamespaceController.getNamespaces"),
    Case("namespace-show", Call("GET", NAMESPACES, {"show": "all", "namespaceId": "{svc}"}), 200,
         Exact({"namespace": "{svc}", "namespaceShowName": "Name of {svc}", "namespaceDesc": "about {svc}",
                "quota": 200, "configCount": 0, "type": 2}),
         "C/controller/NamespaceController.getNamespace", setup=(_CREATE_NS,)),
    Case("namespace-show-public", Call("GET", NAMESPACES, {"show": "all", "namespaceId": ""}), 200,
         Exact({"namespace": "", "namespaceShowName": "Public", "namespaceDesc": "Public Namespace", "quota": 200,
                "configCount": 0, "type": 0}), "C/controller/NamespaceController.getNamespace (blank id)"),
    Case("namespace-check-taken", Call("GET", NAMESPACES, {"checkNamespaceIdExist": "true",
                                                           "customNamespaceId": "{svc}"}), 200, Exact(True),
         "C/controller/NamespaceController.checkNamespaceIdExist", setup=(_CREATE_NS,)),
    Case("namespace-check-free", Call("GET", NAMESPACES, {"checkNamespaceIdExist": "true",
                                                          "customNamespaceId": "{svc}"}), 200, Exact(False),
         "C/controller/NamespaceController.checkNamespaceIdExist"),
    Case("namespace-update", Call("PUT", NAMESPACES, form={"namespace": "{svc}", "namespaceShowName": "Renamed"}),
         200, Exact(True), "C/controller/NamespaceController.editNamespace", setup=(_CREATE_NS,)),
    Case("namespace-delete", Call("DELETE", NAMESPACES, {"namespaceId": "{svc}"}), 200, Exact(True),
         "C/controller/NamespaceController.deleteConfig", setup=(_CREATE_NS,)),
    Case("cluster-update", Call("PUT", f"{NS}/cluster", _CLUSTER_FORM), 200, "ok",
         "N/controllers/ClusterController.update", setup=(_CREATE_SVC,)),
    Case("cluster-update-missing-service", Call("PUT", f"{NS}/cluster", _CLUSTER_FORM), 400,
         "service not found:DEFAULT_GROUP@@{svc}", "N/controllers/ClusterController.update"),
    Case("cluster-update-no-cluster", Call("PUT", f"{NS}/cluster", {"serviceName": "{svc}"}), 400,
         "Param 'clusterName' is required.", "N/controllers/ClusterController.update: WebUtils.required"),
    Case("cluster-update-metadata-only", Call("PUT", f"{NS}/cluster", {"serviceName": "{svc}", "clusterName": "c1",
                                                                       "metadata": "k=v"}), 200, "ok",
         "N/controllers/ClusterController.update", setup=(_CREATE_SVC,),
         differs="Nacos requires checkPort, useInstancePort4Check and healthChecker; here they keep their values"),
    Case("service-get-clusters", _get("/service", serviceName="{svc}"), 200,
         {"clusters": Exact([{"name": "c1", "metadata": {"k": "v"}, "healthChecker": {
             "type": "HTTP", "path": "/health", "headers": "", "expectedResponseCode": 200}}])},
         "N/controllers/ServiceController.detail", setup=(_CREATE_SVC, Call("PUT", f"{NS}/cluster", _CLUSTER_FORM))),
    Case("service-delete", Call("DELETE", f"{NS}/service", {"serviceName": "{svc}"}), 200, "ok",
         "N/controllers/ServiceController.remove", setup=(_CREATE_SVC,)),
    Case("service-delete-not-empty", Call("DELETE", f"{NS}/service", {"serviceName": "{svc}"}), 400,
         "Service DEFAULT_GROUP@@{svc} is not empty, can't be delete. Please unregister instance first",
         "N/controllers/ServiceController.remove", setup=(_reg(),),
         differs="Nacos 1.4.2 deletes the service and its instances (this is Nacos 2's rule and text)"),
    Case("service-outlives-last-instance", _get("/service", serviceName="{svc}"), 200,
         {"name": "{svc}", "clusters": []}, "N/core/ServiceManager.EmptyServiceAutoClean (kept until cleaned)",
         setup=(_reg(), Call("DELETE", f"{NS}/instance", INSTANCE))),
]

CASES: list[Case] = [
    *_INSTANCES, *_LISTS, *_BEATS, *_SERVICES, *_CATALOG, *_OPERATOR, *_CONSOLE_AND_MISC, *_AUTH, *_CLUSTER_DATA
]
