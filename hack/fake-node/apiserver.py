#!/usr/bin/env python3
"""A fake Kubernetes API server for tests and demos: GET, LIST, WATCH, and writes
(create, update, merge/JSON/apply patch, delete, the status subresource).

It keeps objects in memory, numbers every change with a global resourceVersion, keeps a
bounded history of change events for watch resumption and consistent list paging, and
lets tests inject faults through a separate plain-HTTP control API.
See README.md for the protocol details and what it does not emulate.

Stdlib only. Importable (FakeAPIServer) and runnable as a CLI.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import copy
import datetime
import json
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (apiVersion, plural) -> (kind, namespaced)
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "pods"): ("Pod", True),
    ("v1", "namespaces"): ("Namespace", False),
    ("v1", "nodes"): ("Node", False),
    ("apps/v1", "replicasets"): ("ReplicaSet", True),
    ("apps/v1", "deployments"): ("Deployment", True),
    ("apps/v1", "statefulsets"): ("StatefulSet", True),
    ("apps/v1", "daemonsets"): ("DaemonSet", True),
    ("batch/v1", "jobs"): ("Job", True),
    ("batch/v1", "cronjobs"): ("CronJob", True),
    ("coordination.k8s.io/v1", "leases"): ("Lease", True),
    # A custom resource (its CRD is taken as installed): cluster-scoped.
    ("nodeprof.dev/v1alpha1", "profilingpolicies"): ("ProfilingPolicy", False),
}
# Built-in groups accept strategic merge patches; custom resources answer 415.
CUSTOM_GROUPS = {"nodeprof.dev"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
KIND_TO_RESOURCE: dict[tuple[str, str], str] = {
    (api_version, kind): plural for (api_version, plural), (kind, _) in RESOURCES.items()
}

# Field selectors the real API accepts, per resource (others answer 400).
FIELD_LABELS: dict[str, set[str]] = {
    "pods": {
        "metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
        "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
        "status.podIP", "status.nominatedNodeName",
    },
    "jobs": {"metadata.name", "metadata.namespace", "status.successful"},
    "replicasets": {"metadata.name", "metadata.namespace", "status.replicas"},
    "nodes": {"metadata.name", "spec.unschedulable"},
    "namespaces": {"metadata.name", "status.phase"},
}
DEFAULT_FIELD_LABELS = {"metadata.name", "metadata.namespace"}

EXPIRED_CONTINUE_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter."
)
GIGANTIC_BYTES = 20 * 1024 * 1024
VERSION_INFO = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2024-08-13T00:00:00Z", "goVersion": "go1.22.5",
                "compiler": "gc", "platform": "linux/amd64"}


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def log(msg: str) -> None:
    sys.stderr.write(f"apiserver: {msg}\n")
    sys.stderr.flush()


class APIError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason or REASONS.get(code, "InternalError")
        self.message = message
        self.details = details

    def body(self) -> dict:
        return status_body(self.code, self.reason, self.message, self.details)


# ---------------------------------------------------------------- selectors


def _split_outside_parens(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)$")
_EQ_RE = re.compile(r"^([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.-]*)$")
_KEY_RE = re.compile(r"^(!?)\s*([A-Za-z0-9_./-]+)$")


def parse_label_selector(text: str | None) -> list[tuple[str, str, set[str]]]:
    """k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b); comma = AND."""
    if not text:
        return []
    reqs = []
    for term in _split_outside_parens(text):
        m = _SET_RE.match(term)
        if m:
            reqs.append((m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}))
            continue
        m = _EQ_RE.match(term)
        if m:
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append((m.group(1), op, {m.group(3)}))
            continue
        m = _KEY_RE.match(term)
        if m:
            reqs.append((m.group(2), "!" if m.group(1) else "exists", set()))
            continue
        raise APIError(400, f'unable to parse requirement: found \'{term}\', expected: valid label selector')
    return reqs


def labels_match(reqs, obj: dict) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for key, op, values in reqs:
        present = key in labels
        val = labels.get(key)
        if op == "=" and not (present and val in values):
            return False
        if op == "!=" and present and val in values:
            return False
        if op == "in" and not (present and val in values):
            return False
        if op == "notin" and present and val in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


def parse_field_selector(text: str | None, plural: str) -> list[tuple[str, str, str]]:
    if not text:
        return []
    allowed = FIELD_LABELS.get(plural, DEFAULT_FIELD_LABELS)
    reqs = []
    for term in (t.strip() for t in text.split(",")):
        if not term:
            continue
        if "!=" in term:
            field, value = term.split("!=", 1)
            op = "!="
        elif "==" in term:
            field, value = term.split("==", 1)
            op = "="
        elif "=" in term:
            field, value = term.split("=", 1)
            op = "="
        else:
            raise APIError(400, f"invalid selector: '{text}'; can't understand '{term}'")
        field = field.strip()
        if field not in allowed:
            raise APIError(400, f'field label not supported: {field}')
        reqs.append((field, op, value.strip()))
    return reqs


def field_value(obj: dict, path: str) -> str:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def fields_match(reqs, obj: dict) -> bool:
    for field, op, value in reqs:
        actual = field_value(obj, field)
        if (op == "=") != (actual == value):
            return False
    return True


# ---------------------------------------------------------------- storage


def obj_key(obj: dict) -> str:
    md = obj.get("metadata") or {}
    ns = md.get("namespace") or ""
    return f"{ns}/{md.get('name')}" if ns else f"{md.get('name')}"


class Event:
    __slots__ = ("rv", "type", "resource", "key", "obj", "prev")

    def __init__(self, rv, type_, resource, key, obj, prev):
        self.rv = rv
        self.type = type_
        self.resource = resource  # (apiVersion, plural)
        self.key = key
        self.obj = obj  # stored object (for DELETED: final state with the deletion RV)
        self.prev = prev  # object before this change (None for ADDED)


class Watcher:
    def __init__(self, resource, namespace, labels, fields):
        self.resource = resource
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.cond = threading.Condition()
        self.queue: collections.deque = collections.deque()
        self.last_rv = 0
        self.min_rv = 0  # events at or below this RV were asked not to be sent

    def push(self, item) -> None:
        with self.cond:
            self.queue.append(item)
            self.cond.notify_all()

    def wants(self, ev: Event) -> bool:
        if ev.resource != self.resource:
            return False
        if self.namespace and (ev.obj.get("metadata") or {}).get("namespace") != self.namespace:
            return False
        return True

    def matches(self, obj: dict | None) -> bool:
        return obj is not None and labels_match(self.labels, obj) and fields_match(self.fields, obj)

    def convert(self, ev: Event) -> tuple[str, dict] | None:
        """Like the real watch cache: selector transitions become ADDED / DELETED."""
        cur = ev.type != "DELETED" and self.matches(ev.obj)
        old = self.matches(ev.prev)
        if cur and not old:
            return "ADDED", ev.obj
        if cur and old:
            return "MODIFIED", ev.obj
        if old and not cur:
            if ev.type == "DELETED":
                return "DELETED", ev.obj
            gone = copy.deepcopy(ev.prev)
            gone["metadata"]["resourceVersion"] = str(ev.rv)
            return "DELETED", gone
        return None


class Store:
    def __init__(self, history: int = 1000):
        self.lock = threading.RLock()
        self.rv = 0
        self.objects: dict[tuple[str, str], dict[str, dict]] = {r: {} for r in RESOURCES}
        self.history: collections.deque[Event] = collections.deque()
        self.history_limit = max(1, history)
        # Every event with rv > floor is in the history: resuming from RV >= floor works.
        self.floor = 0
        self.watchers: set[Watcher] = set()

    # -- writes (control API and API writes)
    def put(self, obj: dict) -> dict:
        if not isinstance(obj, dict):
            raise APIError(400, "object must be a JSON object")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        plural = KIND_TO_RESOURCE.get((api_version, kind))
        if plural is None:
            raise APIError(400, f"unsupported apiVersion/kind {api_version}/{kind}")
        resource = (api_version, plural)
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        if not md.get("name"):
            raise APIError(400, "metadata.name is required")
        if RESOURCES[resource][1]:
            md.setdefault("namespace", "default")
        else:
            md.pop("namespace", None)
        with self.lock:
            return self.store_object(resource, obj)

    def store_object(self, resource, obj: dict) -> dict:
        """Stores obj (metadata.name and namespace set), keeping uid and creation time of the
        object it replaces; bumps generation when spec changes. Call with the lock held."""
        api_version = resource[0]
        md = obj["metadata"]
        key = obj_key(obj)
        prev = self.objects[resource].get(key)
        if prev is not None:
            md.setdefault("uid", prev["metadata"]["uid"])
            md.setdefault("creationTimestamp", prev["metadata"]["creationTimestamp"])
            if "generation" in prev["metadata"] and "generation" not in md:
                gen = prev["metadata"]["generation"]
                md["generation"] = gen + 1 if prev.get("spec") != obj.get("spec") else gen
        else:
            md.setdefault("uid", str(uuid.uuid4()))
            md.setdefault("creationTimestamp", now_rfc3339())
            if api_version != "v1":
                md.setdefault("generation", 1)
        self.rv += 1
        md["resourceVersion"] = str(self.rv)
        self.objects[resource][key] = obj
        self._record(Event(self.rv, "MODIFIED" if prev else "ADDED", resource, key, obj, prev))
        return obj

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict:
        plural = KIND_TO_RESOURCE.get((api_version, kind))
        if plural is None:
            raise APIError(400, f"unsupported apiVersion/kind {api_version}/{kind}")
        resource = (api_version, plural)
        key = f"{namespace}/{name}" if RESOURCES[resource][1] else name
        with self.lock:
            prev = self.objects[resource].get(key)
            if prev is None:
                raise APIError(404, f'{plural} "{name}" not found', details={"name": name, "kind": plural})
            return self.remove_object(resource, key)

    def remove_object(self, resource, key: str) -> dict:
        """Deletes a stored object; answers its final state. Call with the lock held."""
        prev = self.objects[resource].pop(key)
        self.rv += 1
        final = copy.deepcopy(prev)
        final["metadata"]["resourceVersion"] = str(self.rv)
        self._record(Event(self.rv, "DELETED", resource, key, final, prev))
        return final

    def _record(self, ev: Event) -> None:
        self.history.append(ev)
        while len(self.history) > self.history_limit:
            self.floor = self.history.popleft().rv
        for w in list(self.watchers):
            if w.wants(ev):
                w.push(("event", ev))

    def expire(self, notify: bool = True) -> None:
        """Compact: nothing at or before the current RV can be resumed or continued. With
        notify, open watches get the 410 ERROR event and end."""
        with self.lock:
            self.rv += 1  # a fresh list after compaction gets an RV that is still valid
            self.floor = self.rv
            self.history.clear()
            if notify:
                for w in list(self.watchers):
                    w.push(("expire", self.floor))

    # -- reads
    def snapshot(self, resource, rv: int | None = None) -> tuple[int, dict[str, dict]]:
        """The objects of one resource as of rv (latest if None), rebuilt from history."""
        with self.lock:
            state = dict(self.objects[resource])
            if rv is None or rv >= self.rv:
                return self.rv, state
            if rv < self.floor:
                raise APIError(410, EXPIRED_CONTINUE_MESSAGE, "Expired")
            for ev in reversed(self.history):
                if ev.rv <= rv:
                    break
                if ev.resource != resource:
                    continue
                if ev.prev is None:
                    state.pop(ev.key, None)
                else:
                    state[ev.key] = ev.prev
            return rv, state

    def register(self, w: Watcher, since: int | None) -> tuple[list, int] | None:
        """Registers a watcher; returns the initial items and the RV, or None if too old."""
        with self.lock:
            if since is None:
                items = []
                for key in sorted(self.objects[w.resource]):
                    obj = self.objects[w.resource][key]
                    if w.namespace and obj["metadata"].get("namespace") != w.namespace:
                        continue
                    items.append(("initial", obj))
            else:
                if since < self.floor:
                    return None
                items = [("event", ev) for ev in self.history if ev.rv > since and w.wants(ev)]
            w.min_rv = since or 0
            w.last_rv = self.rv if since is None else since
            with w.cond:
                w.queue.extend(items)
            self.watchers.add(w)
            return items, self.rv

    def unregister(self, w: Watcher) -> None:
        with self.lock:
            self.watchers.discard(w)

    def broadcast(self, item) -> int:
        with self.lock:
            for w in list(self.watchers):
                w.push(item)
            return len(self.watchers)


# ---------------------------------------------------------------- faults


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Clears every fault but tokens."""
        self.chunk_size = 0
        self.coalesce = 1
        self.stall_until = 0.0
        self.fail_status = 0
        self.fail_count = 0
        # Keep-alive connections idle this long are closed (None: never).
        self.keepalive_timeout: float | None = None
        # Instead of closing at the idle timeout, drop the next request that arrives after it.
        self.keepalive_close_on_reuse = False
        # (verb, resource) pairs answered 403, resource as "plural" or "plural/subresource".
        self.forbidden: set[tuple[str, str]] = set()

    def stalled(self) -> float:
        """Seconds of stall left (0 if none)."""
        return max(0.0, self.stall_until - time.monotonic())

    def take_failure(self) -> int:
        with self.lock:
            if self.fail_count > 0:
                self.fail_count -= 1
                return self.fail_status
            return 0


def continue_token(rv: int, last_key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": last_key + "\x00"}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("v") != "meta.k8s.io/v1":
            raise ValueError("version")
        rv, start = data["rv"], data["start"]
        if not isinstance(rv, int) or rv <= 0 or not isinstance(start, str):
            raise ValueError("fields")
        return rv, start
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise APIError(400, "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")


def parse_path(path: str):
    """-> (resource, namespace or None, name or None, is_watch_prefix, subresource or None)
    or raises 404."""
    parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
    not_found = APIError(404, "the server could not find the requested resource", details={})
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        api_version, rest = "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        raise not_found
    watch_prefix = False
    if rest and rest[0] == "watch":  # deprecated /watch/ paths
        watch_prefix, rest = True, rest[1:]
    namespace = name = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    subresource = None
    if len(rest) == 3 and rest[2] == "status" and not watch_prefix:
        subresource, rest = "status", rest[:2]
    if not rest or len(rest) > 2:
        raise not_found
    plural = rest[0]
    name = rest[1] if len(rest) == 2 else None
    resource = (api_version, plural)
    if resource not in RESOURCES:
        raise not_found
    if namespace is not None and not RESOURCES[resource][1]:
        raise not_found
    return resource, namespace, name, watch_prefix, subresource


# ---------------------------------------------------------------- patches


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise APIError(422, f"invalid JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _parent(doc, tokens: list[str], path: str):
    cur = doc
    for t in tokens[:-1]:
        if isinstance(cur, dict) and t in cur:
            cur = cur[t]
        elif isinstance(cur, list) and t.isdigit() and int(t) < len(cur):
            cur = cur[int(t)]
        else:
            raise APIError(422, f"doc is missing path: {path}")
    return cur


def _get(doc, path: str):
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise APIError(422, f"doc is missing path: {path}")


def _remove(doc, path: str):
    tokens = _pointer(path)
    parent, last = _parent(doc, tokens, path), tokens[-1] if tokens else None
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last is not None and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise APIError(422, f"unable to remove nonexistent key: {path}")


def _add(doc, path: str, value):
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and (last == "-" or (last.isdigit() and int(last) <= len(parent))):
        parent.insert(len(parent) if last == "-" else int(last), value)
    else:
        raise APIError(422, f"doc is missing path: {path}")
    return doc


def json_patch(doc, operations):
    """RFC 6902 JSON patch, all or nothing (the caller keeps the original on error)."""
    if not isinstance(operations, list):
        raise APIError(400, "json patch must be a JSON array of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise APIError(400, f"invalid json patch operation: {op!r}")
        kind, path = op.get("op"), op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise APIError(400, f"json patch {kind} operation does not have a value")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if _pointer(path):
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise APIError(400, f"json patch {kind} operation does not have a from")
            value = copy.deepcopy(_get(doc, source))
            if kind == "move":
                _remove(doc, source)
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise APIError(422, f"the server rejected our request due to an error in our request: "
                                    f"testing value {path} failed")
        else:
            raise APIError(400, f"unexpected json patch operation {kind!r}")
    return doc


# ---------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError)):
            log(f"request from {client_address} failed: {exc!r}")


class APIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"
    sys_version = ""
    api: "FakeAPIServer"

    def setup(self):
        super().setup()
        self.served = 0
        self.idle_since = time.monotonic()
        self.api.track_connection(self.request, True)
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (OSError, ssl.SSLError):
                self.close_connection = True
                raise
            self.request.settimeout(None)

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
            self.close_connection = True

    def finish(self):
        self.api.track_connection(self.request, False)
        try:
            super().finish()
        except (ConnectionError, ssl.SSLError, OSError):
            pass

    def _readable_within(self, seconds: float) -> bool:
        sock = self.request
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        r, _, _ = select.select([sock], [], [], max(0.0, seconds))
        return bool(r)

    def handle_one_request(self):
        """Serves one request; on a kept-alive connection (not its first request) applies the
        keep-alive faults: close after the idle timeout, silently, as API servers and load
        balancers do, or (close_on_reuse) drop the first request arriving after it, as when a
        request crosses the server's close on the wire."""
        faults = self.api.faults
        timeout = faults.keepalive_timeout
        if self.served > 0 and timeout is not None:
            if faults.keepalive_close_on_reuse:
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline:
                    self.close_connection = True
                    return
                if time.monotonic() - self.idle_since >= timeout:
                    if self.parse_request():
                        url = urllib.parse.urlsplit(self.path)
                        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
                        self.api.record_request({
                            "method": self.command, "path": url.path, "query": query, "status": None,
                            "watch": query.get("watch", "").lower() in ("1", "true"), "time": time.time(),
                            "dropped": True})
                    self.close_connection = True
                    return
                self._serve_parsed_line()
                return
            if not self._readable_within(timeout - (time.monotonic() - self.idle_since)):
                self.close_connection = True
                return
        super().handle_one_request()
        self.served += 1
        self.idle_since = time.monotonic()

    def _serve_parsed_line(self):
        """The rest of BaseHTTPRequestHandler.handle_one_request once the request line is read."""
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.parse_request():
            return
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(501, f"Unsupported method ({self.command!r})")
            return
        method()
        self.wfile.flush()
        self.served += 1
        self.idle_since = time.monotonic()

    def log_message(self, format, *args):  # noqa: A002
        if self.api.verbose:
            log(f"{self.address_string()} {format % args}")

    # -- helpers
    def _send_json(self, code: int, body, extra_headers: dict | None = None) -> None:
        data = dumps(body)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        if self.record is not None:
            self.record["status"] = code

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        self.body = b""
        self._dispatch()

    def do_HEAD(self):
        self.body = b""
        self._dispatch()

    def do_POST(self):
        self.body = self._read_body()
        self._dispatch()

    do_PUT = do_PATCH = do_DELETE = do_POST

    def _dispatch(self):
        self.record = None
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        is_watch = query.get("watch", "").lower() in ("1", "true")
        self.record = {
            "method": self.command,
            "path": url.path,
            "query": query,
            "status": None,
            "watch": is_watch,
            "time": time.time(),
        }
        self.api.record_request(self.record)
        api = self.api
        while (left := api.faults.stalled()) > 0:  # stalled: accept, say nothing
            time.sleep(min(left, 0.2))
        try:
            failure = api.faults.take_failure()
            if failure:
                headers = {"Retry-After": "1"} if failure == 429 else None
                messages = {
                    429: "Too many requests, please try again later.",
                    503: "The server is currently unable to handle the request",
                    500: "Internal error occurred: injected failure",
                }
                raise_err = APIError(failure, messages.get(failure, "injected failure"))
                self._send_json(failure, raise_err.body(), headers)
                return
            if url.path in ("/healthz", "/livez", "/readyz") and self.command in ("GET", "HEAD"):
                data = b"ok"  # anonymous, plain text, like the real health endpoints
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.record["status"] = 200
                return
            if api.tokens:
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[len("Bearer "):].strip() not in api.tokens:
                    self._send_json(401, status_body(401, "Unauthorized", "Unauthorized"))
                    return
            if url.path == "/version" and self.command in ("GET", "HEAD"):
                self._send_json(200, VERSION_INFO)
                return
            resource, namespace, name, watch_prefix, subresource = parse_path(url.path)
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(self.command)
            if verb is None:
                verb = "watch" if is_watch or watch_prefix else ("get" if name is not None else "list")
            self._authorize(verb, resource, namespace, name, subresource)
            if self.command not in ("GET", "HEAD"):
                self._write(resource, namespace, name, subresource, query)
                return
            if subresource is not None:
                self._get(resource, namespace, name)
                return
            if watch_prefix:
                is_watch = True
                self.record["watch"] = True
            if is_watch:
                if name is not None:
                    query["fieldSelector"] = ",".join(
                        x for x in (query.get("fieldSelector"), f"metadata.name={name}") if x)
                self._watch(resource, namespace, query)
            elif name is not None:
                self._get(resource, namespace, name)
            else:
                self._list(resource, namespace, query)
        except APIError as e:
            self._send_json(e.code, e.body())
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    def _authorize(self, verb, resource, namespace, name, subresource):
        """The forbid fault: 403 with the real message for a denied (verb, resource)."""
        rule = resource[1] + (f"/{subresource}" if subresource else "")
        if (verb, rule) not in self.api.faults.forbidden:
            return
        group = resource[0].split("/")[0] if "/" in resource[0] else ""
        what = f'{resource[1]}.{group} "{name}"' if name and group else (f'{resource[1]} "{name}"' if name else resource[1])
        scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        sub = f' with subresource "{subresource}"' if subresource else ""
        details = {"kind": resource[1]}
        if group:
            details["group"] = group
        if name:
            details["name"] = name
        raise APIError(403, f'{what} is forbidden: User "system:serviceaccount:nodeprof:nodeprof" cannot {verb} '
                            f'resource "{resource[1]}"{sub} in API group "{group}"{scope}', details=details)

    def _body_json(self):
        try:
            return json.loads(self.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise APIError(400, f"the body of the request is not valid JSON: {e}")

    def _write(self, resource, namespace, name, subresource, query):
        """POST (create), PUT (update), PATCH (merge, json, strategic on built-ins, apply),
        DELETE, on objects and their status subresource."""
        store = self.api.store
        kind, namespaced = RESOURCES[resource]
        plural = resource[1]
        group = resource[0].split("/")[0] if "/" in resource[0] else ""
        qualified = f"{kind}.{group}" if group else kind
        if namespaced and namespace is None and self.command != "GET":
            raise APIError(404, "the server could not find the requested resource", details={})
        if self.command == "POST":
            if name is not None:
                raise APIError(405, "the server does not allow this method on the requested resource")
            obj = self._checked_body(resource, namespace, None, qualified)
            with store.lock:
                if obj_key(obj) in store.objects[resource]:
                    n = obj["metadata"]["name"]
                    raise APIError(409, f'{plural}{"." + group if group else ""} "{n}" already exists', "AlreadyExists",
                                   details={"name": n, "group": group, "kind": plural})
                for field in ("uid", "resourceVersion", "creationTimestamp", "generation"):
                    obj["metadata"].pop(field, None)
                obj.pop("status", None)  # status is written through the status subresource
                self._send_json(201, self.api.render(resource, store.store_object(resource, obj)))
            return
        if name is None:
            raise APIError(405, "the server does not allow this method on the requested resource")
        key = f"{namespace}/{name}" if namespaced else name
        not_found = APIError(404, f'{plural}{"." + group if group else ""} "{name}" not found',
                             details={"name": name, "group": group, "kind": plural})
        if self.command == "DELETE":
            options = self._body_json() if self.body else {}
            pre = (options or {}).get("preconditions") or {}
            with store.lock:
                current = store.objects[resource].get(key)
                if current is None:
                    raise not_found
                md = current["metadata"]
                if pre.get("uid") and pre["uid"] != md["uid"]:
                    raise APIError(409, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                        f"UID in object meta: {md['uid']}", "Conflict")
                if pre.get("resourceVersion") and pre["resourceVersion"] != md["resourceVersion"]:
                    raise APIError(409, f"Precondition failed: ResourceVersion in precondition: "
                                        f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                        f"{md['resourceVersion']}", "Conflict")
                self._send_json(200, self.api.render(resource, store.remove_object(resource, key)))
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        with store.lock:
            current = store.objects[resource].get(key)
            if self.command == "PUT":
                obj = self._checked_body(resource, namespace, name, qualified)
                if current is None:
                    raise not_found
                want = obj["metadata"].get("resourceVersion")
                if want and want != current["metadata"]["resourceVersion"]:
                    raise APIError(409, f'Operation cannot be fulfilled on {plural}{"." + group if group else ""} '
                                        f'"{name}": the object has been modified; please apply your changes to '
                                        f'the latest version and try again', "Conflict",
                                   details={"name": name, "group": group, "kind": plural})
            else:  # PATCH
                patch = self._body_json()
                if content_type == "application/merge-patch+json" or (
                        content_type == "application/strategic-merge-patch+json" and group not in CUSTOM_GROUPS):
                    if current is None:
                        raise not_found
                    obj = merge_patch(current, patch)
                elif content_type == "application/json-patch+json":
                    if current is None:
                        raise not_found
                    obj = json_patch(current, patch)
                elif content_type == "application/apply-patch+yaml":
                    if not query.get("fieldManager"):
                        raise APIError(400, "PATCH " + self.path.split("?")[0] +
                                       ": fieldManager is required for apply requests")
                    if not isinstance(patch, dict):
                        raise APIError(400, "the apply body must be an object (JSON; YAML is not parsed here)")
                    if current is None and subresource is None:
                        obj = self._checked_body(resource, namespace, name, qualified, patch)
                        for field in ("uid", "resourceVersion", "creationTimestamp", "generation"):
                            obj["metadata"].pop(field, None)
                        self._send_json(201, self.api.render(resource, store.store_object(resource, obj)))
                        return
                    if current is None:
                        raise not_found
                    obj = merge_patch(current, patch)
                else:
                    raise APIError(415, f"the body of the request was in an unknown format - accepted media types "
                                        f"include: application/json-patch+json, application/merge-patch+json, "
                                        f"application/apply-patch+yaml" +
                                   ("" if group in CUSTOM_GROUPS else ", application/strategic-merge-patch+json"))
                obj = self._checked_body(resource, namespace, name, qualified, obj)
                want = obj["metadata"].get("resourceVersion")
                if want and want != current["metadata"]["resourceVersion"]:
                    raise APIError(409, f'Operation cannot be fulfilled on {plural}{"." + group if group else ""} '
                                        f'"{name}": the object has been modified; please apply your changes to '
                                        f'the latest version and try again', "Conflict")
            # The status subresource changes only status; the main resource never changes it.
            merged = copy.deepcopy(current)
            if subresource == "status":
                if obj.get("status") is None:
                    merged.pop("status", None)
                else:
                    merged["status"] = obj["status"]
            else:
                merged = obj
                if "status" in current:
                    merged["status"] = copy.deepcopy(current["status"])
                else:
                    merged.pop("status", None)
            merged["metadata"]["uid"] = current["metadata"]["uid"]
            merged["metadata"]["creationTimestamp"] = current["metadata"]["creationTimestamp"]
            merged["metadata"].pop("resourceVersion", None)
            if "generation" in current["metadata"]:
                merged["metadata"]["generation"] = current["metadata"]["generation"] + (
                    1 if merged.get("spec") != current.get("spec") else 0)
            self._send_json(200, self.api.render(resource, store.store_object(resource, merged)))

    def _checked_body(self, resource, namespace, name, qualified, obj=None) -> dict:
        """The object of a create or update, validated as the real API does (400 for a
        mismatch with the URL, 422 for an invalid object)."""
        obj = copy.deepcopy(obj) if obj is not None else self._body_json()
        if not isinstance(obj, dict):
            raise APIError(400, "the body of the request must be a JSON object")
        api_version, kind = resource[0], RESOURCES[resource][0]
        if obj.get("apiVersion", api_version) != api_version or obj.get("kind", kind) != kind:
            raise APIError(400, f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
                                f"API version ({api_version})" if obj.get("apiVersion") != api_version else
                                f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({kind})")
        obj["apiVersion"], obj["kind"] = api_version, kind
        md = obj.get("metadata")
        if md is None:
            md = obj["metadata"] = {}
        if not isinstance(md, dict):
            raise APIError(400, "metadata must be an object")
        body_name = md.get("name")
        if name is not None and body_name not in (None, name):
            raise APIError(400, f"the name of the object ({body_name}) does not match the name on the URL ({name})")
        if name is not None:
            md["name"] = name
        if not md.get("name"):
            raise APIError(422, f"{qualified} \"\" is invalid: metadata.name: Required value: name or generateName "
                                f"is required")
        n = md["name"]
        if not isinstance(n, str) or len(n) > 253 or not DNS_SUBDOMAIN.match(n):
            raise APIError(422, f'{qualified} "{n}" is invalid: metadata.name: Invalid value: "{n}": a lowercase '
                                f"RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                                f"and must start and end with an alphanumeric character")
        if RESOURCES[resource][1]:
            if md.get("namespace") not in (None, namespace):
                raise APIError(400, "the namespace of the provided object does not match the namespace sent on "
                                    "the request")
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        if "spec" in obj and not isinstance(obj["spec"], dict):
            raise APIError(422, f'{qualified} "{n}" is invalid: spec: Invalid value: "{type(obj["spec"]).__name__}": '
                                f"spec in body must be of type object")
        return obj

    def _get(self, resource, namespace, name):
        key = f"{namespace}/{name}" if namespace else name
        with self.api.store.lock:
            obj = self.api.store.objects[resource].get(key)
        if obj is None:
            details = {"name": name, "kind": resource[1]}
            if "/" in resource[0]:
                details["group"] = resource[0].split("/")[0]
            raise APIError(404, f'{resource[1]} "{name}" not found', details=details)
        self._send_json(200, self.api.render(resource, obj))

    def _list(self, resource, namespace, query):
        plural = resource[1]
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), plural)
        limit_s = query.get("limit", "")
        try:
            limit = int(limit_s) if limit_s else 0
        except ValueError:
            raise APIError(400, f'limit: Invalid value: "{limit_s}"')
        cont = query.get("continue", "")
        rv_param = query.get("resourceVersion", "")
        if cont:
            if rv_param not in ("", "0"):
                raise APIError(400, "specifying resource version is not allowed when using continue")
            snap_rv, start = parse_continue(cont)
            rv, state = self.api.store.snapshot(resource, snap_rv)
        else:
            start = ""
            rv, state = self.api.store.snapshot(resource)
        keys = sorted(state)
        matching = []
        for k in keys:
            if start and k < start:
                continue
            obj = state[k]
            if namespace and obj["metadata"].get("namespace") != namespace:
                continue
            if labels_match(labels, obj) and fields_match(fields, obj):
                matching.append((k, obj))
        meta = {"resourceVersion": str(rv)}
        if limit > 0 and len(matching) > limit:
            page = matching[:limit]
            meta["continue"] = continue_token(rv, page[-1][0])
            if not labels and not fields:
                meta["remainingItemCount"] = len(matching) - limit
        else:
            page = matching
        items = []
        for _, obj in page:
            item = dict(obj)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            items.append(item)
        kind = RESOURCES[resource][0]
        self._send_json(200, {"kind": f"{kind}List", "apiVersion": resource[0], "metadata": meta, "items": items})

    # -- watch
    def _watch(self, resource, namespace, query):
        api = self.api
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), resource[1])
        rv_param = query.get("resourceVersion", "")
        since = None
        if rv_param not in ("", "0"):
            try:
                since = int(rv_param)
                if since < 0:
                    raise ValueError
            except ValueError:
                raise APIError(400, f'resourceVersion: Invalid value: "{rv_param}": invalid resource version')
        timeout = None
        if query.get("timeoutSeconds"):
            try:
                timeout = float(query["timeoutSeconds"])
            except ValueError:
                raise APIError(400, f'timeoutSeconds: Invalid value: "{query["timeoutSeconds"]}"')
        bookmarks = query.get("allowWatchBookmarks", "").lower() in ("1", "true")
        w = Watcher(resource, namespace, labels, fields)
        reg = api.store.register(w, since)
        kind = RESOURCES[resource][0]

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.record["status"] = 200
        if reg is None:
            with api.store.lock:
                floor = api.store.floor
            err = status_body(410, "Expired", f"too old resource version: {since} ({floor})")
            self._chunk(dumps({"type": "ERROR", "object": err}) + b"\n")
            self._chunk(b"")
            return
        try:
            self._stream(w, kind, resource, timeout, bookmarks)
        finally:
            api.store.unregister(w)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _write_event(self, data: bytes) -> None:
        size = self.api.faults.chunk_size
        if size and size > 0:
            for i in range(0, len(data), size):
                self._chunk(data[i:i + size])
        else:
            self._chunk(data)

    def _client_gone(self) -> bool:
        sock = self.request
        if isinstance(sock, ssl.SSLSocket):
            return False
        try:
            r, _, _ = select.select([sock], [], [], 0)
            if r:
                return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True
        return False

    def _stream(self, w: Watcher, kind: str, resource, timeout, bookmarks) -> None:
        api = self.api
        start = time.monotonic()
        deadline = start + timeout if timeout is not None else None
        next_bookmark = start + api.bookmark_interval
        pending: list[bytes] = []
        pending_since = 0.0
        last_check = start
        while True:
            now = time.monotonic()
            if api.stopping.is_set():
                break
            if api.faults.stalled() > 0:
                time.sleep(min(api.faults.stalled(), 0.05))
                continue
            if deadline is not None and now >= deadline:
                break
            if bookmarks and now >= next_bookmark:
                with api.store.lock:
                    w.push(("bookmark", api.store.rv))
                next_bookmark = now + api.bookmark_interval
            items = []
            with w.cond:
                if not w.queue:
                    wait = 0.1
                    if pending:
                        wait = min(wait, max(0.0, pending_since + 0.1 - now))
                    w.cond.wait(wait)
                if api.faults.stalled() > 0:
                    continue  # stalled: keep everything queued
                while w.queue:
                    items.append(w.queue.popleft())
            end = False
            for item in items:
                tag = item[0]
                if tag == "event":
                    if item[1].rv <= w.min_rv:
                        continue
                    conv = w.convert(item[1])
                    if conv is None:
                        continue
                    data = dumps({"type": conv[0], "object": api.render(resource, conv[1])}) + b"\n"
                elif tag == "initial":
                    if not w.matches(item[1]):
                        continue
                    data = dumps({"type": "ADDED", "object": api.render(resource, item[1])}) + b"\n"
                elif tag == "bookmark":
                    data = dumps({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": resource[0],
                        "metadata": {"resourceVersion": str(item[1])}}}) + b"\n"
                elif tag == "raw":
                    data = item[1]
                elif tag == "expire":
                    err = status_body(410, "Expired", f"too old resource version: {w.last_rv} ({item[1]})")
                    data = dumps({"type": "ERROR", "object": err}) + b"\n"
                    end = True
                elif tag == "close":
                    end = True
                    break
                elif tag == "abort":  # restart: the connection is cut, no end of response
                    self.close_connection = True
                    return
                else:
                    continue
                if not pending:
                    pending_since = time.monotonic()
                pending.append(data)
                if tag == "event":
                    w.last_rv = item[1].rv
                if end:
                    break
            n = max(1, api.faults.coalesce)
            if pending and (end or len(pending) >= n or time.monotonic() - pending_since >= 0.1):
                if n > 1:
                    while pending:
                        group, pending = pending[:n], pending[n:]
                        self._write_event(b"".join(group))
                else:
                    for data in pending:
                        self._write_event(data)
                    pending = []
            if end:
                break
            if time.monotonic() - last_check > 0.5:
                last_check = time.monotonic()
                if self._client_gone():
                    self.close_connection = True
                    return
        if pending:
            for data in pending:
                self._write_event(data)
        self._chunk(b"")


class ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-control"
    sys_version = ""
    api: "FakeAPIServer"

    def log_message(self, format, *args):  # noqa: A002
        if self.api.verbose:
            log(f"control {format % args}")

    def _reply(self, code: int, body) -> None:
        data = dumps(body)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        return json.loads(raw)

    def _handle(self):
        try:
            body = self._body() if self.command in ("POST", "PUT", "DELETE") else None
        except json.JSONDecodeError as e:
            self._reply(400, {"error": f"invalid JSON: {e}"})
            return
        path = urllib.parse.urlsplit(self.path).path
        try:
            for method, prefix, fn in self.api.control_routes:
                if method == self.command and (path == prefix or (prefix.endswith("/") and path.startswith(prefix))):
                    code, result = fn(path, body)
                    self._reply(code, result)
                    return
            self._reply(404, {"error": f"no control route {self.command} {path}"})
        except APIError as e:
            self._reply(e.code, {"error": e.message, "status": e.body()})
        except Exception as e:  # report, keep serving
            log(f"control {self.command} {path} failed: {e!r}")
            self._reply(500, {"error": repr(e)})

    do_GET = do_POST = do_DELETE = do_PUT = _handle


class FakeAPIServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, control_port: int = 0,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 tokens: list[str] | None = None, bookmark_interval: float = 5.0,
                 history: int = 1000, verbose: bool = False):
        self.host = host
        self.store = Store(history)
        self.faults = Faults()
        self.tokens: set[str] = set(tokens or [])
        self.bookmark_interval = bookmark_interval
        self.verbose = verbose
        self.stopping = threading.Event()
        self.requests: list[dict] = []
        self.requests_lock = threading.Lock()
        self.control_routes: list[tuple[str, str, object]] = []
        self._gigantic: bytes | None = None
        self.connections: set = set()
        self.connections_lock = threading.Lock()

        api = self
        api_handler = type("BoundAPIHandler", (APIHandler,), {"api": api})
        control_handler = type("BoundControlHandler", (ControlHandler,), {"api": api})
        self.httpd = _Server((host, port), api_handler)
        self.tls = bool(tls_cert)
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_cert, tls_key)
            ctx.set_alpn_protocols(["http/1.1"])
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.control = _Server((host, control_port), control_handler)
        self.api_port = self.httpd.server_address[1]
        self.control_port = self.control.server_address[1]
        self._threads: list[threading.Thread] = []

        self.add_control_route("POST", "/objects", self._c_objects)
        self.add_control_route("POST", "/delete", self._c_delete)
        self.add_control_route("POST", "/faults", self._c_faults)
        self.add_control_route("GET", "/requests", lambda p, b: (200, self.request_log()))
        self.add_control_route("POST", "/reset-requests", self._c_reset_requests)
        self.add_control_route("GET", "/state", lambda p, b: (200, self.state()))

    @property
    def api_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.api_port}"

    def ready_info(self) -> dict:
        return {"api_port": self.api_port, "control_port": self.control_port, "api_url": self.api_url}

    def add_control_route(self, method: str, prefix: str, fn) -> None:
        """fn(path, body) -> (http_code, json_body). A prefix ending in / matches subpaths."""
        self.control_routes.append((method, prefix, fn))

    def start(self) -> "FakeAPIServer":
        for srv in (self.httpd, self.control):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.store.broadcast(("close",))
        for srv in (self.httpd, self.control):
            srv.shutdown()
            srv.server_close()

    # -- state changes
    def put(self, obj: dict) -> dict:
        return self.store.put(obj)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict:
        return self.store.delete(api_version, kind, namespace, name)

    def render(self, resource, obj: dict) -> dict:
        if "kind" in obj and "apiVersion" in obj:
            return obj
        out = {"kind": RESOURCES[resource][0], "apiVersion": resource[0]}
        out.update(obj)
        return out

    def track_connection(self, sock, open_: bool) -> None:
        with self.connections_lock:
            if open_:
                self.connections.add(sock)
            else:
                self.connections.discard(sock)

    def restart(self) -> int:
        """Like an API server restart behind a stable address: the history is compacted (etcd
        compacted while it was down, so resuming gets 410) and every API connection is cut at
        once, watches mid-stream (no end of response) and idle keep-alive ones alike."""
        self.store.expire(notify=False)
        self.store.broadcast(("abort",))
        with self.connections_lock:
            sockets = list(self.connections)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(sockets)

    def record_request(self, entry: dict) -> None:
        with self.requests_lock:
            self.requests.append(entry)

    def request_log(self) -> list[dict]:
        with self.requests_lock:
            return [dict(e) for e in self.requests]

    def state(self) -> dict:
        with self.store.lock:
            return {
                "resource_version": str(self.store.rv),
                "objects": sum(len(v) for v in self.store.objects.values()),
                "open_watches": len(self.store.watchers),
                "oldest_history_rv": str(self.store.floor),
            }

    def inject(self, kind: str) -> int:
        with self.store.lock:
            rv = str(self.store.rv)
        if kind == "malformed":
            data = b'{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"trunc\n'
        elif kind == "invalid-json":
            data = b'{"type":"ADDED","object":{"kind":"Pod",,"metadata":{nope}}}\n'
        elif kind == "unknown-type":
            data = dumps({"type": "SURPRISE", "object": {
                "kind": "Pod", "apiVersion": "v1",
                "metadata": {"name": "surprise", "namespace": "default", "uid": str(uuid.uuid4()),
                             "resourceVersion": rv}}}) + b"\n"
        elif kind == "gigantic":
            if self._gigantic is None:
                part = 1024 * 1024
                annotations = {f"example.com/blob-{i:02d}": "x" * part for i in range(GIGANTIC_BYTES // part)}
                self._gigantic = dumps({"type": "ADDED", "object": {
                    "kind": "Pod", "apiVersion": "v1",
                    "metadata": {"name": "gigantic", "namespace": "default", "uid": str(uuid.uuid4()),
                                 "resourceVersion": rv, "annotations": annotations},
                    "spec": {"nodeName": "", "containers": []}, "status": {"phase": "Pending"}}}) + b"\n"
            data = self._gigantic
        elif kind == "missing-fields":
            data = dumps({"type": "ADDED", "object": {
                "kind": "Pod", "apiVersion": "v1",
                "metadata": {"namespace": "default", "resourceVersion": rv}, "spec": {}}}) + b"\n"
        elif kind == "not-json-object":
            data = b"[1,2,3]\n"
        else:
            raise APIError(400, f"unknown inject kind {kind!r}")
        return self.store.broadcast(("raw", data))

    # -- control routes
    def _c_objects(self, path, body):
        if isinstance(body, list):  # bulk: many objects in one request, in order
            return 200, {"stored": len([self.put(obj) for obj in body]),
                         "resource_version": str(self.store.rv)}
        return 200, self.put(body)

    def _c_delete(self, path, body):
        body = body or {}
        return 200, self.delete(body.get("apiVersion", "v1"), body.get("kind", "Pod"),
                                body.get("namespace"), body.get("name", ""))

    def _c_faults(self, path, body):
        body = body or {}
        f = self.faults
        done = {}
        if body.get("reset"):
            with f.lock:
                f.reset()
            done["reset"] = True
        if "chunk_size" in body:
            f.chunk_size = max(0, int(body["chunk_size"]))
        if "coalesce" in body:
            f.coalesce = max(1, int(body["coalesce"]))
        if "stall" in body:
            f.stall_until = time.monotonic() + float(body["stall"])
        if "fail_next" in body:
            spec = body["fail_next"] or {}
            with f.lock:
                f.fail_status = int(spec.get("status", 500))
                f.fail_count = int(spec.get("count", 1))
        if "tokens" in body:
            self.tokens = set(body["tokens"] or [])
        if "keepalive_timeout" in body:
            value = body["keepalive_timeout"]
            f.keepalive_timeout = None if value is None else max(0.0, float(value))
        if "keepalive_close_on_reuse" in body:
            f.keepalive_close_on_reuse = bool(body["keepalive_close_on_reuse"])
        if "forbid" in body:
            f.forbidden = {(str(rule.get("verb")), str(rule.get("resource"))) for rule in body["forbid"] or []}
        if body.get("restart"):
            done["connections_cut"] = self.restart()
        if "inject" in body:
            done["injected_into"] = self.inject(body["inject"])
        if body.get("expire"):
            self.store.expire()
            done["expired_at"] = str(self.store.floor)
        if body.get("close_watches"):
            done["closed"] = self.store.broadcast(("close",))
        return 200, {"ok": True, **done}

    def _c_reset_requests(self, path, body):
        with self.requests_lock:
            self.requests.clear()
        return 200, {"ok": True}


def add_server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--bookmark-interval", type=float, default=5.0,
                   help="seconds between BOOKMARK events on watches that allow them")
    p.add_argument("--history", type=int, default=1000, help="change events kept for watch resume")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")


def wait_for_signal() -> None:
    """Blocks until SIGTERM or SIGINT (unblocked first: the parent may have blocked them)."""
    stop = threading.Event()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(0.5)


def main(argv=None) -> int:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    p = argparse.ArgumentParser(description="Fake Kubernetes API server for tests")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--token", action="append", default=[], help="accepted bearer token (repeatable)")
    add_server_args(p)
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    srv = FakeAPIServer(args.host, args.port, args.control_port, args.tls_cert, args.tls_key,
                        args.token, args.bookmark_interval, args.history, args.verbose)
    srv.start()
    print(json.dumps(srv.ready_info()), flush=True)
    log(f"serving {srv.api_url}, control http://{args.host}:{srv.control_port}")
    wait_for_signal()
    log("stopping")
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
