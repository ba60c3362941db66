"""Drives nacos-sdk-python 3.x (import name ``v2.nacos``) for the tests; runs in its own venv (.venv-nacos3).

    .venv-nacos3/bin/python nacos3_driver.py 127.0.0.1:8848,127.0.0.1:8858 [username password]

With ``NACOS_DRIVER_TLS=ca.pem,cert.pem,key.pem`` in the environment the SDK's gRPC channel is TLS
(its TLSConfig: the CA it verifies the server against, and the certificate and key it presents).

Reads one JSON command per line on stdin and answers one JSON line on stdout: ``{"reply": <id>, "ok": ...,
"result": ...}``. Pushes to a subscription arrive as ``{"event": "push", "service": ..., "hosts": [...]}``
lines at any time. Commands: register, batch_register, deregister, list, subscribe, services, shutdown.
It imports nothing from this project: it is an outside client.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from v2.nacos import (  # type: ignore[import-not-found]
    BatchRegisterInstanceParam,
    ClientConfigBuilder,
    DeregisterInstanceParam,
    GRPCConfig,
    ListInstanceParam,
    ListServiceParam,
    NacosNamingService,
    RegisterInstanceParam,
    SubscribeServiceParam,
    TLSConfig,
)


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def hosts(instances: Any) -> list[dict[str, Any]]:
    return sorted(({"ip": i.ip, "port": i.port, "healthy": i.healthy, "cluster": i.clusterName,
                    "metadata": dict(i.metadata)} for i in instances), key=lambda h: (h["ip"], h["port"]))


async def run(naming: Any, cmd: dict[str, Any]) -> Any:
    op = cmd["op"]
    group = cmd.get("group", "DEFAULT_GROUP")
    if op == "register":
        return await naming.register_instance(RegisterInstanceParam(
            service_name=cmd["service"], group_name=group, ip=cmd["ip"], port=cmd["port"],
            cluster_name=cmd.get("cluster", ""), metadata=cmd.get("metadata", {}), ephemeral=True))
    if op == "batch_register":
        return await naming.batch_register_instances(BatchRegisterInstanceParam(
            service_name=cmd["service"], group_name=group, instances=[
                RegisterInstanceParam(service_name=cmd["service"], group_name=group, ip=ip, port=port)
                for ip, port in cmd["instances"]]))
    if op == "deregister":
        return await naming.deregister_instance(DeregisterInstanceParam(
            service_name=cmd["service"], group_name=group, ip=cmd["ip"], port=cmd["port"],
            cluster_name=cmd.get("cluster", ""), ephemeral=True))
    if op == "list":
        return hosts(await naming.list_instances(ListInstanceParam(
            service_name=cmd["service"], group_name=group, healthy_only=None, subscribe=False)))
    if op == "subscribe":
        service = cmd["service"]

        async def on_change(instances: Any) -> None:
            emit({"event": "push", "service": service, "hosts": hosts(instances)})

        await naming.subscribe(SubscribeServiceParam(service_name=service, group_name=group,
                                                     subscribe_callback=on_change))
        return True
    if op == "services":
        result = await naming.list_services(ListServiceParam(group_name=group, page_no=1, page_size=100))
        return sorted(result.services)
    if op == "shutdown":
        await naming.shutdown()
        return True
    raise ValueError(f"unknown op {op}")


async def main() -> None:
    work_dir = os.environ.get("NACOS_DRIVER_DIR", "/tmp/nacos3-driver")  # the SDK's log and cache folders
    log_level = os.environ.get("NACOS_DRIVER_LOG_LEVEL", "WARNING")
    builder = ClientConfigBuilder().server_address(sys.argv[1]).log_level(log_level)
    builder = builder.log_dir(work_dir).cache_dir(work_dir)
    builder = builder.grpc_config(GRPCConfig(grpc_timeout=5000))
    if os.environ.get("NACOS_DRIVER_TLS"):
        ca_file, cert_file, key_file = os.environ["NACOS_DRIVER_TLS"].split(",")
        builder = builder.tls_config(TLSConfig(enabled=True, ca_file=ca_file, cert_file=cert_file, key_file=key_file))
    if len(sys.argv) > 3:
        builder = builder.username(sys.argv[2]).password(sys.argv[3])
    naming = await NacosNamingService.create_naming_service(builder.build())
    emit({"event": "ready"})
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        cmd = json.loads(line)
        try:
            emit({"reply": cmd["id"], "ok": True, "result": await run(naming, cmd)})
        except Exception as exc:  # the test reads the error
            emit({"reply": cmd["id"], "ok": False, "result": f"{type(exc).__name__}: {exc}"})
        if cmd["op"] == "shutdown":
            return


if __name__ == "__main__":
    asyncio.run(main())
