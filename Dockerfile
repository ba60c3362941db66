# distro-registry node image.
#
# The build never touches the network: every Python package comes from ./wheels, prepared on the host:
# the server's wheel, the SDK's (client/, distroreg-client) and their dependencies. scripts/build-image does
# all of this; by hand on an online machine (the server's wheel built from a copy without client/, so that it
# asks for the SDK by name rather than by a file:// URL of this host):
#     python3 -m pip wheel --no-deps --wheel-dir wheels/ ./client
#     mkdir /tmp/server && cp -r pyproject.toml setup.py README.md distro cluster /tmp/server/
#     python3 -m pip wheel --find-links wheels/ --wheel-dir wheels/ /tmp/server
#     docker build -t distro-registry:latest .
# BASE_IMAGE only needs a Python 3.11 with venv support reachable as `python3`: the official
# python:3.11-slim, or distro-base:bookworm that scripts/build-image makes with debootstrap when no
# registry is reachable.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/distro/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Unprivileged user, a writable working directory, and a healthcheck helper that uses curl when the
# base has it (distro-base does) and Python's urllib otherwise (python:3.11-slim has no curl).
RUN set -eu; \
    if command -v useradd >/dev/null 2>&1; then \
        groupadd --system --gid 10001 distro; \
        useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/distro --no-create-home \
            --shell /usr/sbin/nologin distro; \
    else \
        echo 'distro:x:10001:' >>/etc/group; \
        echo 'distro:x:10001:10001:distro:/var/lib/distro:/usr/sbin/nologin' >>/etc/passwd; \
    fi; \
    mkdir -p /var/lib/distro; \
    chown 10001:10001 /var/lib/distro; \
    printf '%s\n' \
        '#!/bin/sh' \
        '# Exit 0 iff GET /readyz on this node answers 2xx (over HTTPS, checked against the CA, with --http-tls).' \
        'scheme=http; case "${DISTRO_HTTP_TLS:-false}" in [Tt]rue|1|[Yy]es|[Oo]n) scheme=https;; esac' \
        'url="$scheme://127.0.0.1:${DISTRO_PORT:-8848}/readyz"; ca="${DISTRO_TLS_CA_FILE:-}"' \
        'if command -v curl >/dev/null 2>&1; then' \
        '  if [ -n "$ca" ]; then exec curl -fsS -o /dev/null --max-time 2 --cacert "$ca" "$url"; fi' \
        '  exec curl -fsSk -o /dev/null --max-time 2 "$url"' \
        'fi' \
        'exec /opt/distro/bin/python -c "import ssl, sys, urllib.request; ctx = ssl.create_default_context(cafile=sys.argv[2] or None); ctx.check_hostname = bool(sys.argv[2]); ctx.verify_mode = ssl.CERT_REQUIRED if sys.argv[2] else ssl.CERT_NONE; urllib.request.urlopen(sys.argv[1], timeout=2, context=ctx)" "$url" "$ca"' \
        >/usr/local/bin/distro-healthcheck; \
    chmod 0755 /usr/local/bin/distro-healthcheck

# Runtime metadata before the wheels: with the legacy builder (no buildx) each metadata step costs a
# container commit (~1.3 s on fuse-overlayfs), so they stay cached across source changes.
LABEL org.opencontainers.image.title="distro-registry" \
      org.opencontainers.image.description="distro-registry node (Nacos v1 naming API, Distro replication)"
WORKDIR /var/lib/distro
EXPOSE 8848 9848
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=2s --timeout=3s --start-period=5s --retries=3 CMD ["/usr/local/bin/distro-healthcheck"]
ENTRYPOINT ["/opt/distro/bin/distro-node"]

# The venv (ensurepip takes ~9 s here) in its own layer, cached across source changes.
RUN python3 -m venv /opt/distro

# The SDK, the server and their dependencies, all from local wheels; nothing is fetched.
COPY wheels/ /wheels/
RUN set -eu; \
    /opt/distro/bin/python -m pip install --no-index --find-links /wheels distroreg-client distro-registry; \
    rm -rf /wheels; \
    /opt/distro/bin/python -c "import trio, httpx, msgpack, distro, cluster, distroreg"

USER 10001:10001
# scripts/build-image adds --label org.distro-registry.source-hash=<hash of the sources>;
# scripts/cluster rebuilds the image when it differs from the checkout.
