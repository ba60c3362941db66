"""The one renderer of the service-list body: what ``GET /nacos/v1/ns/instance/list`` answers.

The HTTP route, the UDP push (whose packets carry this body as a string), the HTTP watch and the gRPC front
door (the same list in Nacos 2.x's ``serviceInfo`` shape, :meth:`ListRenderer.service_info`) all build it
here, so a client sees the same document whichever way it learns of a change. The ``hosts`` array is the
expensive part: it is kept per (service, clusters the service has, healthyOnly, client flavour) until the
service's view has a new revision, in a cache bounded in bytes (:mod:`cluster.api.hostscache`), as the chunks
it is sent in: a big service's array is a list of runs of hosts, of which a change joins again only those it
touched (:meth:`ListRenderer.render_parts`; the HTTP route sends the chunks without joining them).
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import accumulate, chain, count, pairwise
from json.encoder import encode_basestring as _quote  # what _JSON does to a str (ensure_ascii=False), in C
from operator import add, is_

import trio

from cluster.api.gzipbody import GZIP_MIN_BYTES, deflate_piece, gzip_member
from cluster.api.hostscache import (
    DEFAULT_MAX_BYTES,
    FRAGMENT_MIN_HOSTS,
    FRAGMENT_OVERHEAD_BYTES,
    RUN_HOSTS,
    Form,
    HostsCache,
    Run,
)
from cluster.node.pump import NodeRuntime
from distro.model import Instance, ServiceKey
from distro.views import ServiceView, select_hosts

__all__ = ["DEFAULT_CACHE_MILLIS", "JAVA_AGENT", "PREPARE_SLICE_HOSTS", "PUSH_CACHE_MILLIS", "ListQuery",
           "ListRenderer"]

DEFAULT_CACHE_MILLIS = 3000
"""The ``cacheMillis`` announced to a client that is not a push subscriber (Nacos's default)."""
JAVA_AGENT = "Nacos-Java-Client"
"""User-Agent prefix of the Java client, which expects grouped service names in the list."""
PUSH_CACHE_MILLIS = 10_000
"""The ``cacheMillis`` of a 2.x service info (clients that get pushes poll rarely)."""
PREPARE_SLICE_HOSTS = 1000
"""Hosts :meth:`ListRenderer.prepare` renders between two yields to the event loop (about 1.5 ms of CPU)."""
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_AFTER_COMMA = (1).__add__


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What a list is asked for: the service, a cluster filter (empty: all), and who asks."""

    key: ServiceKey
    clusters: tuple[str, ...] = ()
    healthy_only: bool = False
    java: bool = False  # the Java client gets ``group@@name`` as each host's ``serviceName`` and the ``dom``


def _fragments_of(runs: list[Run]) -> dict[int, tuple[Instance, bytes]]:
    """Every host of ``runs`` with its fragment (cut out of the run's bytes), by ``id(instance)`` (check the
    instance: ``is``)."""
    instances = list(chain.from_iterable(run[0] for run in runs))
    fragments = chain.from_iterable(map(_split, runs))
    return dict(zip(map(id, instances), zip(instances, fragments, strict=True), strict=True))


def _split(run: Run) -> list[bytes]:
    """A run's fragments, cut out of its joined bytes at the ends it keeps."""
    joined, ends = run[2], run[1]
    starts = [0]
    starts += map(_AFTER_COMMA, ends[:-1])  # each fragment starts after the comma that ends the last
    return list(map(joined.__getitem__, map(slice, starts, ends)))


def _run(hosts: tuple[Instance, ...], fragments: list[bytes]) -> Run:
    """A run of ``hosts`` from their fragments: the fragments joined with commas, and where each one ends."""
    ends = array("I", map(add, accumulate(map(len, fragments)), range(len(fragments))))
    return hosts, ends, b",".join(fragments)


def _next_intact(old: list[Run], i: int, hosts: tuple[Instance, ...], pos: int) -> tuple[int, int]:
    """Where the first of the kept runs ``old[i:]`` found intact in ``hosts`` at or after ``pos`` starts, and
    its index; ``(len(hosts), len(old))`` when there is none.

    Runs are looked for by where their first instance stands, in a window of a few runs from ``pos`` (the
    next one intact is usually there), and in the whole rest only for a run expected past the window."""
    total = len(hosts)
    reach = min(total, pos + 4 * RUN_HOSTS)
    where = dict(zip(map(id, hosts[pos:reach]), count(pos)))
    expected = pos  # where old[j] would start if the hosts before it had kept their number
    for j in range(i, len(old)):
        run_hosts = old[j][0]
        width = len(run_hosts)
        at = where.get(id(run_hosts[0]), -1)
        if at < 0 and reach < total and expected + width + RUN_HOSTS >= reach:
            reach = total
            where = dict(zip(map(id, hosts[pos:]), count(pos)))
            at = where.get(id(run_hosts[0]), -1)
        if at >= pos and at + width <= total and all(map(is_, run_hosts, hosts[at:at + width])):
            return at, j
        expected += width
    return total, len(old)


class ListRenderer:
    """Builds ``instance/list`` bodies from this node's read views. One per node, shared by its API parts."""

    def __init__(self, runtime: NodeRuntime, *, cache_max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._runtime = runtime
        self._node = runtime.node
        self.hosts_cache = HostsCache(cache_max_bytes)
        self._last_stamp = 0
        self._prepared: dict[int, tuple[Instance, bytes]] = {}  # fragments prepare() made for the next render

    async def prepare(self, query: ListQuery) -> None:
        """Render, a slice at a time with a yield to the event loop between slices, the host objects that
        the next :meth:`render_parts` (or :meth:`render_gzip`) of ``query`` would otherwise render all in one
        step: those of a big service with nothing kept for it (its first list, or its first after the cache
        let it go), and their shares of the view's checksum. 10,000 hosts held a node for 50-110 ms in one
        step; now in slices of :data:`PREPARE_SLICE_HOSTS`. Call it right before rendering, with no other ``await`` in between; a
        change meanwhile costs nothing but its own hosts (fragments are matched to instances by identity)."""
        self._prepared = {}
        view = self._node.view(query.key)
        if view is None or len(view.instances) < 2 * PREPARE_SLICE_HOSTS:
            return
        clusters = self.hosts_cache.normalise(view, query.clusters)
        if (clusters is None or self.hosts_cache.get(view, (clusters, query.healthy_only, query.java)) is not None
                or self.hosts_cache.runs(view, query.java)):
            return  # nothing to render, or kept: a change renders only its own hosts
        selection = select_hosts(view, clusters, query.healthy_only)
        if selection.protect_triggered:
            return  # rendered whole from fresh copies: nothing here to match
        service_name = view.key.grouped_name if query.java else view.key.service
        prepared: dict[int, tuple[Instance, bytes]] = {}
        hosts = selection.hosts
        for start in range(0, len(hosts), PREPARE_SLICE_HOSTS):
            await trio.lowlevel.checkpoint()
            part = hosts[start:start + PREPARE_SLICE_HOSTS]
            for inst in part:
                inst.checksum_digest()  # the view's checksum (in the list's head) hashes each instance once
            fragments = self._host_fragments(part, view.key, service_name)
            prepared.update(zip(map(id, part), zip(part, fragments, strict=True), strict=True))
        self._prepared = prepared

    def render(self, query: ListQuery, *, cache_millis: int = DEFAULT_CACHE_MILLIS) -> bytes:
        """The UTF-8 JSON body for ``query``, announcing ``cache_millis``."""
        return b"".join(self.render_parts(query, cache_millis=cache_millis))

    def render_parts(self, query: ListQuery, *, cache_millis: int = DEFAULT_CACHE_MILLIS) -> tuple[bytes, ...]:
        """The body of :meth:`render` as the chunks that make it up, in order (kept runs of a big service's
        hosts among them): send them as they are, rather than joining megabytes into one string."""
        key = query.key
        clusters_text = ",".join(query.clusters)
        now_ms = self._runtime.now_ms()
        view = self._node.view(key)
        if view is None:
            empty = {
                "name": key.grouped_name,
                "groupName": key.group,
                "clusters": clusters_text,
                "cacheMillis": cache_millis,
                "hosts": [],
                "lastRefTime": now_ms,
                "checksum": "",
                "allIPs": False,
                "reachProtectionThreshold": False,
                "valid": True,
            }
            return (_JSON.encode(empty).encode("utf-8", "replace"),)
        hosts_chunks, protected = self._hosts_chunks(view, query)
        name = key.grouped_name if query.java else key.service
        meta = {} if view.meta is None else dict(view.meta.metadata)
        head = (
            f'{{"name":{json.dumps(key.grouped_name)},"dom":{json.dumps(name)},"groupName":{json.dumps(key.group)},'
            f'"clusters":{json.dumps(clusters_text)},"cacheMillis":{cache_millis},"lastRefTime":{now_ms},'
            f'"checksum":"{view.checksum}","allIPs":false,"useSpecifiedURL":false,'
            f'"reachProtectionThreshold":{"true" if protected else "false"},"valid":true,"env":"",'
            f'"metadata":{json.dumps(meta, ensure_ascii=False)},"hosts":'
        ).encode()
        return (head, *hosts_chunks, b"}")

    def render_gzip(self, query: ListQuery, *,
                    cache_millis: int = DEFAULT_CACHE_MILLIS) -> tuple[bytes, ...] | None:
        """The body of :meth:`render_parts` as one gzip member, in pieces to send in order (see
        :mod:`cluster.api.gzipbody`), or None when it is under :data:`GZIP_MIN_BYTES` (send it plain).
        The hosts' pieces are deflated once: a kept form's until the view changes, a run's while it is kept."""
        parts = self.render_parts(query, cache_millis=cache_millis)
        if sum(map(len, parts)) < GZIP_MIN_BYTES:
            return None
        view = self._node.view(query.key)
        if view is None or len(parts) < 3:
            return gzip_member(parts, map(deflate_piece, parts))
        head, hosts_chunks, tail = parts[0], parts[1:-1], parts[-1]
        clusters = self.hosts_cache.normalise(view, query.clusters)
        deflated = None
        if clusters is not None:
            form = (clusters, query.healthy_only, query.java)
            deflated = self.hosts_cache.gzipped(view, form)
            if deflated is None:
                deflated = tuple(map(partial(self._deflate_chunk, view), hosts_chunks))
                self.hosts_cache.keep_gzipped(view, form, hosts_chunks, deflated)
        if deflated is None:
            deflated = tuple(map(deflate_piece, hosts_chunks))
        return gzip_member(parts, (deflate_piece(head), *deflated, deflate_piece(tail)))

    def _deflate_chunk(self, view: ServiceView, chunk: bytes) -> bytes:
        """A chunk of a hosts array, deflated: a kept run's from what is kept with it, else made (and kept
        with the run, if it is one)."""
        if len(chunk) <= 2:
            return deflate_piece(chunk)  # punctuation: deflated once, module-wide
        kept = self.hosts_cache.run_deflate(view, chunk)
        if kept is None:
            kept = deflate_piece(chunk)
            self.hosts_cache.keep_run_deflate(view, chunk, kept)
        return kept

    def service_info(self, query: ListQuery) -> bytes:
        """The same list in Nacos 2.x's ``serviceInfo`` shape (gRPC answers and pushes).

        ``name`` is the bare service name (2.x clients key their caches by ``groupName`` + ``name``),
        hosts carry the grouped ``serviceName``, and ``lastRefTime`` is :meth:`stamp`: nacos-sdk-python
        3.x drops a service info whose ``lastRefTime`` is not greater than the one it holds.
        """
        key = query.key
        clusters_text = ",".join(query.clusters)
        view = self._node.view(key)
        if view is None:
            hosts_chunks: tuple[bytes, ...] = (b"[]",)
            protected, checksum = False, ""
        else:
            hosts_chunks, protected = self._hosts_chunks(view, ListQuery(key, query.clusters, query.healthy_only, True))
            checksum = view.checksum
        head = (
            f'{{"name":{json.dumps(key.service)},"groupName":{json.dumps(key.group)},'
            f'"clusters":{json.dumps(clusters_text)},"cacheMillis":{PUSH_CACHE_MILLIS},"lastRefTime":{self.stamp()},'
            f'"checksum":"{checksum}","allIPs":false,'
            f'"reachProtectionThreshold":{"true" if protected else "false"},"valid":true,"hosts":'
        ).encode()
        return b"".join((head, *hosts_chunks, b"}"))

    def stamp(self) -> int:
        """The node's clock in ms, moved on by one when needed so that every stamp is greater than the last."""
        stamp = max(self._runtime.now_ms(), self._last_stamp + 1)
        self._last_stamp = stamp
        return stamp

    def _hosts_chunks(self, view: ServiceView, query: ListQuery) -> tuple[tuple[bytes, ...], bool]:
        clusters = self.hosts_cache.normalise(view, query.clusters)
        if clusters is None:  # only clusters the service does not have: nothing to select, nothing to keep
            return (b"[]",), False
        form = (clusters, query.healthy_only, query.java)
        cached = self.hosts_cache.get(view, form)
        if cached is not None:
            return cached
        try:
            return self._hosts_made(view, query, form)
        finally:
            self._prepared = {}  # for one render only

    def _hosts_made(self, view: ServiceView, query: ListQuery, form: Form) -> tuple[tuple[bytes, ...], bool]:
        selection = select_hosts(view, form[0], query.healthy_only)
        service_name = view.key.grouped_name if query.java else view.key.service
        hosts = selection.hosts
        chunks: tuple[bytes, ...]
        if selection.protect_triggered or len(hosts) < FRAGMENT_MIN_HOSTS:
            # protection hands out fresh copies reported healthy: nothing worth keeping per host
            chunks = (_JSON.encode([self._host(inst, view.key, service_name) for inst in hosts]).encode(),)
        elif form == ((), False, query.java):
            chunks = self._from_runs(view, hosts, service_name, query.java)
        else:
            chunks = (self._filtered(view, hosts, service_name, query.java),)
        self.hosts_cache.put(view, form, chunks, selection.protect_triggered)
        return chunks, selection.protect_triggered

    def _from_runs(self, view: ServiceView, hosts: tuple[Instance, ...], service_name: str,
                   java: bool) -> tuple[bytes, ...]:
        """The unfiltered hosts array as ``[``, the kept runs (joined again only where a host changed, came or
        went) with commas between them, and ``]``; the new runs replace the kept ones.

        The kept runs are walked in order: a run whose instances are, one for one, the very objects at the
        current position is reused as it is. Where one is not, the hosts up to the next kept run found intact
        (by where its first instance now stands) are made into new runs, with the fragments of the runs they
        replace and only the other hosts rendered. C-level passes: after a change to one host of 10,000 this
        is one map of ids and one run joined again, not 3.6 MB."""
        old = self.hosts_cache.runs(view, java)
        total = len(hosts)
        new: list[Run] = []
        pos = i = 0
        while pos < total:
            if i < len(old):
                run_hosts = old[i][0]
                width = len(run_hosts)
                if pos + width <= total and all(map(is_, run_hosts, hosts[pos:pos + width])):
                    new.append(old[i])
                    pos += width
                    i += 1
                    continue
            end, resume = _next_intact(old, i, hosts, pos)
            if 0 < end - pos < RUN_HOSTS // 2 and resume < len(old):
                end += len(old[resume][0])  # too few hosts for a run of their own: take the next run in
                resume += 1
            new += self._make_runs(hosts[pos:end], old[i:resume], view.key, service_name)
            pos, i = end, resume
        size_bytes = sum(len(run[2]) for run in new) + FRAGMENT_OVERHEAD_BYTES * total
        self.hosts_cache.keep_runs(view, java, new, size_bytes)
        out = [b","] * (2 * len(new) + 1)
        out[0], out[-1] = b"[", b"]"
        out[1::2] = [run[2] for run in new]
        return tuple(out)

    def _make_runs(self, hosts: tuple[Instance, ...], replaced: list[Run], key: ServiceKey,
                   service_name: str) -> list[Run]:
        """``hosts`` as runs of :data:`RUN_HOSTS` to twice that (all of them when fewer), reusing the fragments
        of the ``replaced`` runs' instances and rendering the others."""
        known = _fragments_of(replaced)
        if self._prepared:
            known.update(self._prepared)
        fragments: list[bytes | None] = []
        misses: list[int] = []
        for n, inst in enumerate(hosts):
            hit = known.get(id(inst))
            if hit is not None and hit[0] is inst:
                fragments.append(hit[1])
            else:
                fragments.append(None)
                misses.append(n)
        if misses:
            for n, fragment in zip(misses, self._host_fragments([hosts[n] for n in misses], key, service_name),
                                   strict=True):
                fragments[n] = fragment
        done: list[bytes] = fragments  # type: ignore[assignment]  # every None was filled in
        pieces = max(1, len(hosts) // RUN_HOSTS)  # runs of RUN_HOSTS to 2 * RUN_HOSTS - 1 hosts (fewer: all)
        bounds = [len(hosts) * k // pieces for k in range(pieces + 1)]
        return [_run(hosts[start:end], done[start:end]) for start, end in pairwise(bounds)]

    def _filtered(self, view: ServiceView, hosts: tuple[Instance, ...], service_name: str, java: bool) -> bytes:
        """A filtered form of a big service (some clusters, healthy only): its hosts array joined from the
        unfiltered form's kept fragments where they are this view's instances, the others rendered."""
        known = _fragments_of(self.hosts_cache.runs(view, java))
        if self._prepared:
            known.update(self._prepared)
        parts: list[bytes] = []
        render: list[Instance] = []
        slots: list[int] = []
        for inst in hosts:
            hit = known.get(id(inst))
            if hit is not None and hit[0] is inst:
                parts.append(hit[1])
            else:
                slots.append(len(parts))
                parts.append(b"")
                render.append(inst)
        if render:
            for slot, fragment in zip(slots, self._host_fragments(render, view.key, service_name), strict=True):
                parts[slot] = fragment
        return b"".join((b"[", b",".join(parts), b"]"))

    def _host_fragments(self, hosts: Iterable[Instance], key: ServiceKey, service_name: str) -> list[bytes]:
        """Each host's JSON object, byte for byte what ``_JSON.encode(self._host(...))`` gives, about three
        times cheaper: the fields are formatted into one string, and everything that follows from the
        metadata alone (the map itself, the three timings, the id generator) is encoded once per distinct
        metadata mapping (instances share them). The first list of a 10,000-instance service renders every
        host; at ~6 us each that held the node for 60-110 ms."""
        cfg = self._node.config
        grouped = key.grouped_name
        service = _quote(service_name)
        tails: dict[int, tuple[Mapping[str, str], str]] = {}  # id(metadata) -> (metadata, the object's tail)
        out: list[bytes] = []
        append = out.append
        for inst in hosts:
            metadata = inst.metadata
            tail = tails.get(id(metadata))
            if tail is None or tail[0] is not metadata:
                tail = tails[id(metadata)] = (metadata, (
                    f',"metadata":{_JSON.encode(dict(metadata))},'
                    f'"instanceHeartBeatInterval":{inst.beat_interval_ms(cfg.client_beat_interval_ms)},'
                    f'"instanceHeartBeatTimeOut":{inst.heartbeat_timeout_ms(cfg.heartbeat_timeout_ms)},'
                    f'"ipDeleteTimeout":{inst.expire_ms(cfg.instance_expire_ms)},'
                    f'"instanceIdGenerator":{_quote(inst.id_generator)}}}'
                ))
            ip = inst.ip
            port = inst.port
            cluster = inst.cluster
            instance_id = inst.assigned_id or f"{ip}#{port}#{cluster}#{grouped}"
            healthy = "true" if inst.healthy else "false"
            append((
                f'{{"instanceId":{_quote(instance_id)},"ip":{_quote(ip)},"port":{port!r},'
                f'"weight":{float.__repr__(inst.weight)},"healthy":{healthy},"valid":{healthy},"marked":false,'
                f'"enabled":{"true" if inst.enabled else "false"},"ephemeral":true,'
                f'"clusterName":{_quote(cluster)},"serviceName":{service}{tail[1]}'
            ).encode())
        return out

    def _host(self, inst: Instance, key: ServiceKey, service_name: str) -> dict[str, object]:
        """One host object of the ``hosts`` array, as Nacos 1.4.2 shows it."""
        cfg = self._node.config
        return {
            "instanceId": inst.instance_id(key),
            "ip": inst.ip,
            "port": inst.port,
            "weight": inst.weight,
            "healthy": inst.healthy,
            "valid": inst.healthy,
            "marked": False,
            "enabled": inst.enabled,
            "ephemeral": True,
            "clusterName": inst.cluster,
            "serviceName": service_name,
            "metadata": dict(inst.metadata),
            "instanceHeartBeatInterval": inst.beat_interval_ms(cfg.client_beat_interval_ms),
            "instanceHeartBeatTimeOut": inst.heartbeat_timeout_ms(cfg.heartbeat_timeout_ms),
            "ipDeleteTimeout": inst.expire_ms(cfg.instance_expire_ms),
            "instanceIdGenerator": inst.id_generator,
        }
