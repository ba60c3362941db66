# shellcheck shell=bash
# Shared helpers for scripts/build-image, scripts/cluster and the chaos scripts.
# Source it from bash:   . "$(dirname "$0")/lib/compose.sh"
#
# Provides:
#   DISTRO_ROOT                 absolute path of the repository root
#   DISTRO_IMAGE                image name (default distro-registry:latest)
#   DISTRO_NODES                the compose services: node1 node2 node3
#   compose ARGS...             `docker compose` (v2) or `docker-compose` (v1), run from the repo root
#   compose_cmd                 prints which compose command is used
#   node_port NODE              host port of a node (node1 -> 8848, node2 -> 8849, node3 -> 8850)
#   node_url NODE               http://127.0.0.1:<port> (https:// when DISTRO_HTTP_TLS=true)
#   curl_tls_args               curl's --cacert arguments for the cluster's CA when the client port is HTTPS
#   node_container NODE         container id of a node's container ('' if it does not exist)
#   node_ready NODE             true if GET /readyz answers 200
#   source_hash                 hash of everything that goes into the image (pyproject, setup.py, distro/,
#                               cluster/, client/, Dockerfile)
#   image_source_hash [IMAGE]   the hash label of an existing image ('' if none)
#   log / die                   messages on stderr
#   with_progress LABEL LOG CMD...
#                               run CMD with its output in LOG, printing a progress line (elapsed time and
#                               LOG's last line) every 15 s on stderr; returns CMD's status

DISTRO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DISTRO_IMAGE="${DISTRO_IMAGE:-distro-registry:latest}"
# shellcheck disable=SC2034  # used by the scripts that source this file
DISTRO_NODES=(node1 node2 node3)
DISTRO_HASH_LABEL="org.distro-registry.source-hash"

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

with_progress() {
    local label="$1" logfile="$2" pid t0 rc last
    shift 2
    t0=$(date +%s)
    "$@" >"$logfile" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            last="$(tail -n 1 "$logfile" 2>/dev/null | tr -d '\r' | cut -c1-90)"
            log "   ... $label: $(($(date +%s) - t0))s${last:+ ($last)}"
        fi
    done
    rc=0
    wait "$pid" || rc=$?
    return "$rc"
}

_COMPOSE=()
_compose_detect() {
    if [ "${#_COMPOSE[@]}" -gt 0 ]; then
        return 0
    fi
    if docker compose version >/dev/null 2>&1; then
        _COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        _COMPOSE=(docker-compose)
    else
        die "neither 'docker compose' (v2) nor 'docker-compose' (v1) is available"
    fi
}

compose_cmd() {
    _compose_detect
    printf '%s\n' "${_COMPOSE[*]}"
}

# Run compose from the repository root so that it picks up docker-compose.yml and .env there,
# whatever the caller's working directory is.
# The project name is "distro" (containers distro_node1_1 with v1, distro-node1-1 with v2) unless
# COMPOSE_PROJECT_NAME says otherwise in the environment or in .env (scripts/cluster writes it there, so
# that a plain `docker compose ...` in the repo root agrees with these scripts).
compose() {
    _compose_detect
    (
        cd "$DISTRO_ROOT" || exit 1
        if [ -z "${COMPOSE_PROJECT_NAME:-}" ] && ! grep -Eq '^[[:space:]]*COMPOSE_PROJECT_NAME=.' .env 2>/dev/null; then
            export COMPOSE_PROJECT_NAME=distro
        fi
        "${_COMPOSE[@]}" -f docker-compose.yml "$@"
    )
}

node_port() {
    local n="${1#node}"
    case "$n" in
        1 | 2 | 3) ;;
        *) die "unknown node '$1' (expected node1, node2 or node3)" ;;
    esac
    # The port may be overridden in the environment or in .env.
    env_value "DISTRO_NODE${n}_PORT" "$((8847 + n))"
}

# A variable from the environment, else from .env, else the default given.
env_value() {
    local var="$1" dflt="$2"
    if [ -n "${!var:-}" ]; then
        printf '%s\n' "${!var}"
    elif [ -f "$DISTRO_ROOT/.env" ] && grep -q "^${var}=" "$DISTRO_ROOT/.env"; then
        grep "^${var}=" "$DISTRO_ROOT/.env" | tail -n1 | cut -d= -f2- | tr -d '"'"'"
    else
        printf '%s\n' "$dflt"
    fi
}

# The client port speaks HTTPS (scripts/cluster up --tls writes DISTRO_HTTP_TLS=true into .env).
http_tls_on() {
    case "$(env_value DISTRO_HTTP_TLS false)" in true | True | 1 | yes | on) return 0 ;; *) return 1 ;; esac
}

# curl's arguments to trust the cluster's CA when the client port speaks HTTPS (none otherwise).
curl_tls_args() {
    if http_tls_on; then
        local dir
        dir="$(env_value DISTRO_TLS_DIR ./.cluster/tls)"
        case "$dir" in /*) ;; *) dir="$DISTRO_ROOT/${dir#./}" ;; esac
        printf '%s\n' --cacert "$dir/ca.pem"
    fi
}

node_url() {
    local scheme=http
    http_tls_on && scheme=https
    printf '%s://127.0.0.1:%s\n' "$scheme" "$(node_port "$1")"
}

node_container() {
    compose ps -a -q "$1" 2>/dev/null | head -n1
}

node_ready() {
    local tls_args
    mapfile -t tls_args < <(curl_tls_args)
    curl -fsS -o /dev/null --max-time 2 "${tls_args[@]}" "$(node_url "$1")/readyz" 2>/dev/null
}

# Everything that changes the content of the image. Paths and contents are both hashed, caches skipped.
source_hash() {
    (
        cd "$DISTRO_ROOT" || exit 1
        {
            printf '%s\n' pyproject.toml setup.py Dockerfile .dockerignore
            find distro cluster client -type f ! -path '*/__pycache__/*' ! -name '*.py[co]' \
                ! -path 'client/build/*' ! -path '*.egg-info/*' 2>/dev/null
            if [ -f README.md ]; then printf '%s\n' README.md; fi
        } | LC_ALL=C sort -u | while IFS= read -r f; do
            [ -f "$f" ] || continue
            printf '%s  %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
        done | sha256sum | cut -c1-16
    )
}

# Never fails (callers run under `set -e -o pipefail`): a missing image or label gives ''.
image_source_hash() {
    { docker image inspect -f "{{ index .Config.Labels \"$DISTRO_HASH_LABEL\" }}" "${1:-$DISTRO_IMAGE}" 2>/dev/null ||
        true; } | sed 's/<no value>//'
}
