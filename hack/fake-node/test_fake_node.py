"""Tests of the fake API server and the fake node: real HTTP on port 0, real cgroups."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import apiserver  # noqa: E402

TOKEN = "test-token"


def pod(name, ns="default", node="n1", labels=None, **extra):
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
           "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
           "status": {"phase": "Running"}}
    obj.update(extra)
    return obj


class RawWatch:
    """A watch read over a raw socket, keeping the HTTP chunk boundaries."""

    def __init__(self, port, path, token=TOKEN, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        req = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        self.sock.sendall(req.encode())
        self.buf = b""
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
        self.ended = False
        self.pending = b""

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _read_until(self, sep):
        while sep not in self.buf:
            self._fill()
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return out

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def chunk(self):
        """The next chunk's payload; b"" for the terminating chunk."""
        size = int(self._read_until(b"\r\n"), 16)
        data = self._read_exact(size)
        if self._read_exact(2) != b"\r\n":
            raise AssertionError("chunk not followed by CRLF")
        if size == 0:
            self.ended = True
        return data

    def line(self):
        """The next newline-terminated event text (across chunks), or None at the end."""
        while b"\n" not in self.pending:
            if self.ended:
                return None
            c = self.chunk()
            if c == b"":
                return None
            self.pending += c
        i = self.pending.index(b"\n")
        out, self.pending = self.pending[:i], self.pending[i + 1:]
        return out

    def event(self):
        ln = self.line()
        return None if ln is None else json.loads(ln)

    def close(self):
        self.sock.close()


class APITestBase(unittest.TestCase):
    server_kwargs: dict = {}

    def setUp(self):
        kw = {"tokens": [TOKEN], "bookmark_interval": 0.3}
        kw.update(self.server_kwargs)
        self.srv = apiserver.FakeAPIServer(**kw).start()
        self.conns = []

    def tearDown(self):
        for c in self.conns:
            c.close()
        self.srv.stop()

    def conn(self, port=None, timeout=5.0):
        c = http.client.HTTPConnection("127.0.0.1", port or self.srv.api_port, timeout=timeout)
        self.conns.append(c)
        return c

    def get(self, path, token=TOKEN, conn=None):
        c = conn or self.conn()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read()
        return r.status, json.loads(body) if body else None, r

    def control(self, method, path, body=None):
        c = self.conn(self.srv.control_port)
        c.request(method, path, body=json.dumps(body) if body is not None else None)
        r = c.getresponse()
        data = json.loads(r.read())
        if r.status != 200:
            raise AssertionError(f"control {path}: {r.status} {data}")
        return data

    def put(self, obj):
        return self.control("POST", "/objects", obj)

    def delete(self, name, ns="default", kind="Pod", api_version="v1"):
        return self.control("POST", "/delete", {"apiVersion": api_version, "kind": kind, "namespace": ns,
                                                "name": name})

    def faults(self, **kw):
        return self.control("POST", "/faults", kw)

    def watch(self, query, path="/api/v1/pods", token=TOKEN):
        w = RawWatch(self.srv.api_port, f"{path}?{query}", token=token)
        self.addCleanup(w.close)
        return w

    def wait_watches(self, n):
        deadline = time.time() + 3
        while time.time() < deadline:
            if self.control("GET", "/state")["open_watches"] == n:
                return
            time.sleep(0.02)
        self.fail(f"expected {n} open watches")


class AuthTests(APITestBase):
    def test_401_without_or_with_wrong_token_and_rotation(self):
        status, body, _ = self.get("/api/v1/pods", token=None)
        self.assertEqual(status, 401)
        self.assertEqual(body, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        self.assertEqual(self.get("/api/v1/pods", token="wrong")[0], 401)
        self.assertEqual(self.get("/api/v1/pods")[0], 200)
        self.faults(tokens=["new-a", "new-b"])
        self.assertEqual(self.get("/api/v1/pods")[0], 401)
        self.assertEqual(self.get("/api/v1/pods", token="new-b")[0], 200)
        self.faults(tokens=[])
        self.assertEqual(self.get("/api/v1/pods", token=None)[0], 200)

    def test_requests_log(self):
        self.get("/api/v1/namespaces/a/pods?limit=3&fieldSelector=spec.nodeName%3Dn1")
        self.get("/api/v1/pods", token="bad")
        log = self.control("GET", "/requests")
        self.assertEqual([(e["path"], e["status"]) for e in log],
                         [("/api/v1/namespaces/a/pods", 200), ("/api/v1/pods", 401)])
        self.assertEqual(log[0]["query"], {"limit": "3", "fieldSelector": "spec.nodeName=n1"})
        self.assertEqual(log[0]["method"], "GET")
        self.assertFalse(log[0]["watch"])
        self.control("POST", "/reset-requests", {})
        self.assertEqual(self.control("GET", "/requests"), [])


class ReadTests(APITestBase):
    def test_get_one_and_not_found(self):
        stored = self.put(pod("a", ns="shop"))
        self.assertTrue(stored["metadata"]["uid"])
        self.assertTrue(stored["metadata"]["creationTimestamp"].endswith("Z"))
        status, body, _ = self.get("/api/v1/namespaces/shop/pods/a")
        self.assertEqual(status, 200)
        self.assertEqual(body, stored)
        self.assertEqual((body["kind"], body["apiVersion"]), ("Pod", "v1"))
        status, body, _ = self.get("/api/v1/namespaces/shop/pods/x")
        self.assertEqual(status, 404)
        self.assertEqual((body["kind"], body["reason"], body["code"], body["message"]),
                         ("Status", "NotFound", 404, 'pods "x" not found'))

    def test_version_and_health(self):
        status, body, _ = self.get("/version")
        self.assertEqual((status, body["major"]), (200, "1"))
        self.assertEqual(self.get("/version", token=None)[0], 401)
        c = self.conn()
        c.request("GET", "/readyz")
        r = c.getresponse()
        self.assertEqual((r.status, r.read()), (200, b"ok"))

    def test_unknown_path_is_404_status(self):
        for path in ("/api/v1/widgets", "/apis/apps/v1/namespaces/a/b/c/d", "/healthz2", "/apis/nope/v1/pods"):
            status, body, _ = self.get(path)
            self.assertEqual(status, 404, path)
            self.assertEqual(body["kind"], "Status")

    def test_apps_and_batch_paths(self):
        rs = self.put({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-1", "namespace": "s"}})
        self.put({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "s"}})
        status, body, _ = self.get("/apis/apps/v1/namespaces/s/replicasets/web-1")
        self.assertEqual((status, body["metadata"]["uid"]), (200, rs["metadata"]["uid"]))
        status, body, _ = self.get("/apis/apps/v1/replicasets")
        self.assertEqual((body["kind"], body["apiVersion"]), ("ReplicaSetList", "apps/v1"))
        self.assertEqual([i["metadata"]["name"] for i in body["items"]], ["web-1"])
        status, body, _ = self.get("/apis/batch/v1/namespaces/other/jobs")
        self.assertEqual((status, body["items"]), (200, []))
        self.assertEqual(self.get("/apis/batch/v1/namespaces/s/jobs")[1]["items"][0]["metadata"]["name"], "j")

    def test_list_paging_is_consistent(self):
        for name in ("e", "b", "d", "a", "c"):
            self.put(pod(name))
        self.put(pod("z", ns="aaa"))
        status, page1, _ = self.get("/api/v1/pods?limit=2")
        self.assertEqual(status, 200)
        self.assertEqual(page1["kind"], "PodList")
        self.assertEqual([(i["metadata"]["namespace"], i["metadata"]["name"]) for i in page1["items"]],
                         [("aaa", "z"), ("default", "a")])
        for item in page1["items"]:
            self.assertNotIn("kind", item)
            self.assertNotIn("apiVersion", item)
        self.assertEqual(page1["metadata"]["remainingItemCount"], 4)
        snap_rv = page1["metadata"]["resourceVersion"]
        old_b = self.get("/api/v1/namespaces/default/pods/b")[1]
        # Changes after the first page must not show in later pages.
        self.delete("b")
        self.put(pod("bb"))
        self.put(pod("c", labels={"changed": "yes"}))
        tok = urllib.parse.quote(page1["metadata"]["continue"])
        status, page2, _ = self.get(f"/api/v1/pods?limit=2&continue={tok}")
        self.assertEqual(status, 200)
        self.assertEqual([i["metadata"]["name"] for i in page2["items"]], ["b", "c"])
        self.assertEqual(page2["items"][0]["metadata"]["resourceVersion"], old_b["metadata"]["resourceVersion"])
        self.assertNotIn("changed", page2["items"][1]["metadata"].get("labels", {}))
        self.assertEqual(page2["metadata"]["resourceVersion"], snap_rv)
        tok = urllib.parse.quote(page2["metadata"]["continue"])
        status, page3, _ = self.get(f"/api/v1/pods?limit=2&continue={tok}")
        self.assertEqual([i["metadata"]["name"] for i in page3["items"]], ["d", "e"])
        self.assertNotIn("continue", page3["metadata"])
        # A fresh list sees the new state.
        names = [i["metadata"]["name"] for i in self.get("/api/v1/pods")[1]["items"]]
        self.assertEqual(names, ["z", "a", "bb", "c", "d", "e"])

    def test_expired_and_malformed_continue(self):
        for name in "abc":
            self.put(pod(name))
        page1 = self.get("/api/v1/pods?limit=1")[1]
        tok = urllib.parse.quote(page1["metadata"]["continue"])
        self.faults(expire=True)
        status, body, _ = self.get(f"/api/v1/pods?limit=1&continue={tok}")
        self.assertEqual(status, 410)
        self.assertEqual((body["reason"], body["code"]), ("Expired", 410))
        self.assertIn("continue parameter is too old", body["message"])
        status, body, _ = self.get("/api/v1/pods?limit=1&continue=not-a-token!!")
        self.assertEqual((status, body["reason"]), (400, "BadRequest"))
        # A new list after compaction pages fine.
        page1 = self.get("/api/v1/pods?limit=1")[1]
        tok = urllib.parse.quote(page1["metadata"]["continue"])
        self.assertEqual(self.get(f"/api/v1/pods?limit=1&continue={tok}")[0], 200)

    def test_selectors(self):
        self.put(pod("a", node="n1", labels={"app": "web", "tier": "fe"}))
        self.put(pod("b", node="n2", labels={"app": "web"}))
        self.put(pod("c", node="n1", labels={"app": "db"}, ns="data"))

        def names(q):
            status, body, _ = self.get(f"/api/v1/pods?{q}")
            self.assertEqual(status, 200, body)
            return [i["metadata"]["name"] for i in body["items"]]

        self.assertEqual(names("fieldSelector=spec.nodeName%3Dn1"), ["c", "a"])
        self.assertEqual(names("fieldSelector=spec.nodeName!%3Dn1"), ["b"])
        self.assertEqual(names("fieldSelector=spec.nodeName%3Dn1,metadata.namespace%3Ddefault"), ["a"])
        self.assertEqual(names("fieldSelector=metadata.name%3Db"), ["b"])
        self.assertEqual(names("labelSelector=app%3Dweb"), ["a", "b"])
        self.assertEqual(names("labelSelector=tier"), ["a"])
        self.assertEqual(names("labelSelector=app%3Dweb,!tier"), ["b"])
        self.assertEqual(names("labelSelector=app+in+(db,x)"), ["c"])
        status, body, _ = self.get("/api/v1/pods?fieldSelector=spec.bogus%3D1")
        self.assertEqual((status, body["reason"]), (400, "BadRequest"))
        # limit counts matching items; no remainingItemCount with selectors (as the real API)
        body = self.get("/api/v1/pods?limit=1&labelSelector=app%3Dweb")[1]
        self.assertEqual(len(body["items"]), 1)
        self.assertIn("continue", body["metadata"])
        self.assertNotIn("remainingItemCount", body["metadata"])


class WatchTests(APITestBase):
    server_kwargs = {"history": 5}

    def test_watch_replays_from_rv_then_streams(self):
        first = self.put(pod("a"))
        self.put(pod("b"))
        self.put(pod("c"))
        w = self.watch(f"watch=1&resourceVersion={first['metadata']['resourceVersion']}")
        self.assertEqual(w.status, 200)
        self.assertEqual(w.headers["content-type"], "application/json")
        self.assertEqual(w.headers["transfer-encoding"], "chunked")
        ev = [w.event(), w.event()]
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in ev], [("ADDED", "b"), ("ADDED", "c")])
        self.assertEqual((ev[0]["object"]["kind"], ev[0]["object"]["apiVersion"]), ("Pod", "v1"))
        mod = self.put(pod("a", labels={"x": "1"}))
        e = w.event()
        self.assertEqual((e["type"], e["object"]["metadata"]["resourceVersion"]),
                         ("MODIFIED", mod["metadata"]["resourceVersion"]))
        self.delete("a")
        e = w.event()
        self.assertEqual(e["type"], "DELETED")
        self.assertEqual(e["object"]["metadata"]["labels"], {"x": "1"})
        self.assertNotEqual(e["object"]["metadata"]["resourceVersion"], mod["metadata"]["resourceVersion"])
        self.assertEqual(e["object"]["metadata"]["resourceVersion"], self.control("GET", "/state")["resource_version"])

    def test_watch_without_rv_sends_current_state_first(self):
        self.put(pod("a"))
        self.put(pod("b", ns="other"))
        w = self.watch("watch=true", path="/api/v1/namespaces/default/pods")
        e = w.event()
        self.assertEqual((e["type"], e["object"]["metadata"]["name"]), ("ADDED", "a"))
        self.put(pod("b", ns="other", labels={"y": "2"}))
        self.put(pod("c"))
        e = w.event()
        self.assertEqual((e["type"], e["object"]["metadata"]["name"]), ("ADDED", "c"))
        w0 = self.watch("watch=1&resourceVersion=0")
        self.assertEqual(sorted(w0.event()["object"]["metadata"]["name"] for _ in range(3)), ["a", "b", "c"])

    def test_too_old_rv_gives_410_error_event(self):
        for i in range(8):
            self.put(pod(f"p{i}"))
        state = self.control("GET", "/state")
        w = self.watch("watch=1&resourceVersion=1")
        self.assertEqual(w.status, 200)
        e = w.event()
        self.assertEqual(e["type"], "ERROR")
        self.assertEqual((e["object"]["kind"], e["object"]["code"], e["object"]["reason"]),
                         ("Status", 410, "Expired"))
        self.assertIn("too old resource version: 1", e["object"]["message"])
        self.assertIsNone(w.line())
        self.assertTrue(w.ended)
        # Resuming from the oldest kept point works.
        w2 = self.watch(f"watch=1&resourceVersion={state['oldest_history_rv']}")
        self.assertEqual(w2.event()["type"], "ADDED")

    def test_bookmarks(self):
        last = self.put(pod("a"))
        w = self.watch(f"watch=1&resourceVersion={last['metadata']['resourceVersion']}&allowWatchBookmarks=true")
        self.put(pod("b", ns="x"))
        self.assertEqual(w.event()["type"], "ADDED")
        t0 = time.time()
        e = w.event()
        self.assertEqual(e["type"], "BOOKMARK")
        self.assertLess(time.time() - t0, 2)
        self.assertEqual(e["object"], {"kind": "Pod", "apiVersion": "v1",
                                       "metadata": {"resourceVersion": self.control("GET", "/state")["resource_version"]}})
        # No bookmarks unless asked.
        w2 = self.watch(f"watch=1&resourceVersion={last['metadata']['resourceVersion']}&timeoutSeconds=1")
        self.assertEqual(w2.event()["type"], "ADDED")
        self.assertIsNone(w2.line())

    def test_timeout_seconds_ends_stream_cleanly(self):
        t0 = time.time()
        w = self.watch("watch=1&timeoutSeconds=1")
        self.assertIsNone(w.line())
        self.assertTrue(w.ended)
        self.assertGreater(time.time() - t0, 0.9)
        self.assertLess(time.time() - t0, 2.5)
        # The connection stays usable (keep-alive).
        w.sock.sendall(f"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        head = w._read_until(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"))

    def test_field_selector_transitions(self):
        w = self.watch("watch=1&resourceVersion=0&fieldSelector=spec.nodeName%3Dn1")
        self.put(pod("a", node="n2"))
        self.put(pod("b", node="n1"))
        e = w.event()
        self.assertEqual((e["type"], e["object"]["metadata"]["name"]), ("ADDED", "b"))
        self.put(pod("a", node="n1"))
        e = w.event()
        self.assertEqual((e["type"], e["object"]["metadata"]["name"]), ("ADDED", "a"))
        self.put(pod("a", node="n1", labels={"v": "2"}))
        self.assertEqual(w.event()["type"], "MODIFIED")
        moved = self.put(pod("a", node="n3"))
        e = w.event()
        self.assertEqual((e["type"], e["object"]["metadata"]["name"]), ("DELETED", "a"))
        # like the real watch cache: the last matching state, with the event's RV
        self.assertEqual(e["object"]["spec"]["nodeName"], "n1")
        self.assertEqual(e["object"]["metadata"]["resourceVersion"], moved["metadata"]["resourceVersion"])
        self.put(pod("a", node="n4"))
        self.delete("b")
        e = w.event()
        self.assertEqual((e["type"], e["object"]["metadata"]["name"]), ("DELETED", "b"))

    def test_expire_and_close_watches(self):
        self.put(pod("a"))
        w1 = self.watch("watch=1")
        w2 = self.watch("watch=1&labelSelector=x")
        self.assertEqual(w1.event()["type"], "ADDED")
        self.wait_watches(2)
        self.faults(expire=True)
        for w in (w1, w2):
            e = w.event()
            self.assertEqual((e["type"], e["object"]["code"], e["object"]["reason"]), ("ERROR", 410, "Expired"))
            self.assertIsNone(w.line())
        self.wait_watches(0)
        w3 = self.watch("watch=1&resourceVersion=1")
        self.assertEqual(w3.event()["type"], "ERROR")
        rv = self.control("GET", "/state")["resource_version"]
        w4 = self.watch(f"watch=1&resourceVersion={rv}")
        self.wait_watches(1)
        self.faults(close_watches=True)
        self.assertIsNone(w4.line())
        self.assertTrue(w4.ended)


class FaultTests(APITestBase):
    def test_chunk_size_one_byte_per_chunk(self):
        self.faults(chunk_size=1)
        w = self.watch("watch=1&resourceVersion=0")
        self.wait_watches(1)
        stored = self.put(pod("a"))
        expected = json.dumps({"type": "ADDED", "object": stored}, separators=(",", ":")).encode() + b"\n"
        chunks = [w.chunk() for _ in range(len(expected))]
        self.assertTrue(all(len(c) == 1 for c in chunks))
        self.assertEqual(json.loads(b"".join(chunks)), json.loads(expected))
        self.faults(chunk_size=7)
        self.put(pod("b"))
        data = b""
        sizes = []
        while not data.endswith(b"\n"):
            c = w.chunk()
            sizes.append(len(c))
            data += c
        self.assertTrue(all(s == 7 for s in sizes[:-1]) and 1 <= sizes[-1] <= 7, sizes)
        self.faults(reset=True)
        self.put(pod("c"))
        c = w.chunk()
        self.assertEqual(json.loads(c)["object"]["metadata"]["name"], "c")
        self.assertTrue(c.endswith(b"\n"))

    def test_coalesce(self):
        self.faults(coalesce=3)
        w = self.watch("watch=1&resourceVersion=0")
        self.wait_watches(1)
        for name in "abc":
            self.put(pod(name))
        c = w.chunk()
        lines = c.decode().splitlines()
        self.assertEqual([json.loads(ln)["object"]["metadata"]["name"] for ln in lines], ["a", "b", "c"])
        # a lone event is flushed after about 100 ms
        self.put(pod("d"))
        t0 = time.time()
        c = w.chunk()
        self.assertEqual(json.loads(c)["object"]["metadata"]["name"], "d")
        self.assertLess(time.time() - t0, 1.0)

    def test_inject_each_kind(self):
        w = self.watch("watch=1&resourceVersion=0")
        self.wait_watches(1)
        for kind in ("malformed", "unknown-type", "gigantic", "missing-fields", "not-json-object"):
            self.faults(inject=kind)
            name = f"after-{kind}"
            self.put(pod(name))
            bad = w.line()
            if kind == "malformed":
                with self.assertRaises(ValueError):
                    json.loads(bad)
            elif kind == "unknown-type":
                self.assertEqual(json.loads(bad)["type"], "SURPRISE")
            elif kind == "gigantic":
                obj = json.loads(bad)["object"]
                self.assertGreaterEqual(sum(len(v) for v in obj["metadata"]["annotations"].values()), 20 << 20)
            elif kind == "missing-fields":
                obj = json.loads(bad)
                self.assertEqual(obj["type"], "ADDED")
                self.assertNotIn("uid", obj["object"]["metadata"])
                self.assertNotIn("name", obj["object"]["metadata"])
                self.assertNotIn("status", obj["object"])
            else:
                self.assertEqual(json.loads(bad), [1, 2, 3])
            e = w.event()
            self.assertEqual(e["object"]["metadata"]["name"], name, kind)

    def test_stall(self):
        w = self.watch("watch=1&resourceVersion=0&allowWatchBookmarks=true")
        self.wait_watches(1)
        t0 = time.time()
        self.faults(stall=2.0)
        self.put(pod("a"))
        w.sock.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            w.chunk()
        c = self.conn(timeout=0.5)
        c.request("GET", "/api/v1/pods", headers={"Authorization": f"Bearer {TOKEN}"})
        with self.assertRaises(socket.timeout):
            c.getresponse()
        self.assertLess(time.time() - t0, 1.9)
        w.sock.settimeout(5)
        self.assertEqual(w.event()["object"]["metadata"]["name"], "a")
        self.assertEqual(self.get("/api/v1/pods")[0], 200)

    def test_fail_next(self):
        self.faults(fail_next={"status": 503, "count": 2})
        c = self.conn()
        for _ in range(2):
            status, body, _ = self.get("/api/v1/pods", conn=c)
            self.assertEqual((status, body["reason"], body["code"]), (503, "ServiceUnavailable", 503))
        self.assertEqual(self.get("/api/v1/pods", conn=c)[0], 200)
        self.faults(fail_next={"status": 429, "count": 1})
        status, body, r = self.get("/api/v1/pods", conn=c)
        self.assertEqual((status, body["reason"], r.getheader("Retry-After")), (429, "TooManyRequests", "1"))
        self.faults(fail_next={"status": 500, "count": 1})
        status, body, _ = self.get("/api/v1/pods?watch=1", conn=c)
        self.assertEqual((status, body["reason"]), (500, "InternalError"))
        self.assertEqual(self.get("/api/v1/pods", conn=c)[0], 200)


def make_cert(directory):
    cert, key = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def read_ready_line(proc, timeout=10):
    result = {}

    def reader():
        result["line"] = proc.stdout.readline()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if not result.get("line"):
        proc.kill()
        raise AssertionError(f"no ready line; stderr: {proc.stderr.read()}")
    return json.loads(result["line"])


class WriteTests(APITestBase):
    """The write API: create, update, patches, delete, status subresource, RBAC fault."""

    def send(self, method, path, body=None, content_type="application/json", raw=None):
        c = self.conn()
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if data is not None:
            headers["Content-Type"] = content_type
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        text = r.read()
        return r.status, json.loads(text) if text else None

    POLICIES = "/apis/nodeprof.dev/v1alpha1/profilingpolicies"
    LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"

    def policy(self, name, **spec):
        return {"apiVersion": "nodeprof.dev/v1alpha1", "kind": "ProfilingPolicy", "metadata": {"name": name},
                "spec": spec or {"frequency": 19}}

    def test_create_get_conflicts_and_invalid(self):
        status, created = self.send("POST", self.POLICIES, self.policy("cpu"))
        self.assertEqual(status, 201)
        self.assertTrue(created["metadata"]["uid"])
        self.assertNotIn("namespace", created["metadata"])
        self.assertEqual(self.get(f"{self.POLICIES}/cpu")[1]["spec"], {"frequency": 19})
        status, body = self.send("POST", self.POLICIES, self.policy("cpu"))
        self.assertEqual((status, body["reason"]), (409, "AlreadyExists"))
        status, body = self.send("POST", self.POLICIES, self.policy("Not_A_Name"))
        self.assertEqual((status, body["reason"]), (422, "Invalid"))
        self.assertIn("metadata.name: Invalid value", body["message"])
        status, body = self.send("POST", self.POLICIES, {"apiVersion": "nodeprof.dev/v1alpha1",
                                                        "kind": "ProfilingPolicy", "metadata": {}})
        self.assertEqual(status, 422)
        status, body = self.send("POST", self.POLICIES, raw=b"{not json")
        self.assertEqual(status, 400)
        status, body = self.send("POST", self.POLICIES, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})
        self.assertEqual(status, 400)
        # A namespaced collection needs its namespace; a cluster-scoped one has none.
        self.assertEqual(self.send("POST", "/apis/nodeprof.dev/v1alpha1/namespaces/x/profilingpolicies",
                                   self.policy("y"))[0], 404)

    def test_update_with_stale_version_conflicts(self):
        _, created = self.send("POST", self.POLICIES, self.policy("cpu"))
        fresh = dict(created, spec={"frequency": 99})
        status, updated = self.send("PUT", f"{self.POLICIES}/cpu", fresh)
        self.assertEqual(status, 200)
        self.assertEqual(updated["metadata"]["generation"], 2)
        self.assertNotEqual(updated["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"])
        status, body = self.send("PUT", f"{self.POLICIES}/cpu", fresh)  # the old resourceVersion
        self.assertEqual((status, body["reason"]), (409, "Conflict"))
        self.assertIn("the object has been modified", body["message"])
        status, body = self.send("PUT", f"{self.POLICIES}/other", dict(fresh))
        self.assertEqual(status, 400, "the name in the body differs from the URL")
        self.assertEqual(self.send("PUT", f"{self.POLICIES}/missing", self.policy("missing"))[0], 404)

    def test_patches(self):
        self.send("POST", self.POLICIES, self.policy("cpu", frequency=19, keep="x"))
        status, body = self.send("PATCH", f"{self.POLICIES}/cpu", {"spec": {"frequency": 49, "keep": None}},
                                 "application/merge-patch+json")
        self.assertEqual((status, body["spec"]), (200, {"frequency": 49}))
        rv = body["metadata"]["resourceVersion"]
        ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
               {"op": "add", "path": "/metadata/labels", "value": {"a/b": "1"}},
               {"op": "replace", "path": "/spec/frequency", "value": 7}]
        status, body = self.send("PATCH", f"{self.POLICIES}/cpu", ops, "application/json-patch+json")
        self.assertEqual((status, body["spec"]["frequency"], body["metadata"]["labels"]), (200, 7, {"a/b": "1"}))
        status, body = self.send("PATCH", f"{self.POLICIES}/cpu", ops, "application/json-patch+json")
        self.assertEqual(status, 422, "the test of the old resourceVersion fails")
        status, body = self.send("PATCH", f"{self.POLICIES}/cpu", [{"op": "remove", "path": "/spec/nope"}],
                                 "application/json-patch+json")
        self.assertEqual(status, 422)
        status, body = self.send("PATCH", f"{self.POLICIES}/cpu", {"spec": {}},
                                 "application/strategic-merge-patch+json")
        self.assertEqual((status, body["reason"]), (415, "UnsupportedMediaType"))
        self.assertEqual(self.send("PATCH", f"{self.POLICIES}/missing", {}, "application/merge-patch+json")[0], 404)
        # Apply creates, then merges; it needs a field manager.
        applied = self.policy("mem", frequency=5)
        self.assertEqual(self.send("PATCH", f"{self.POLICIES}/mem", applied, "application/apply-patch+yaml")[0], 400)
        status, body = self.send("PATCH", f"{self.POLICIES}/mem?fieldManager=nodeprof", applied,
                                 "application/apply-patch+yaml")
        self.assertEqual((status, body["spec"]), (201, {"frequency": 5}))
        status, body = self.send("PATCH", f"{self.POLICIES}/mem?fieldManager=nodeprof",
                                 self.policy("mem", frequency=6), "application/apply-patch+yaml")
        self.assertEqual((status, body["spec"]), (200, {"frequency": 6}))

    def test_status_subresource_changes_only_status(self):
        _, created = self.send("POST", self.POLICIES, dict(self.policy("cpu"), status={"ignored": True}))
        self.assertNotIn("status", created, "create through the main resource ignores status")
        status, body = self.send("PATCH", f"{self.POLICIES}/cpu/status",
                                 {"spec": {"frequency": 1}, "status": {"nodes": 3}}, "application/merge-patch+json")
        self.assertEqual((status, body["status"], body["spec"]), (200, {"nodes": 3}, {"frequency": 19}))
        status, body = self.send("PUT", f"{self.POLICIES}/cpu", dict(body, status={"nodes": 0}))
        self.assertEqual(body["status"], {"nodes": 3}, "the main resource keeps the status")
        status, body = self.send("PUT", f"{self.POLICIES}/cpu/status", dict(body, status={"nodes": 4}))
        self.assertEqual((status, body["status"]), (200, {"nodes": 4}))

    def test_leases_delete_preconditions_and_watch(self):
        w = self.watch("watch=1", path=self.LEASES)
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "nodeprof"},
                 "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 15}}
        status, created = self.send("POST", self.LEASES, lease)
        self.assertEqual((status, created["metadata"]["namespace"]), (201, "kube-system"))
        self.assertEqual(w.event()["type"], "ADDED")
        status, body = self.send("DELETE", f"{self.LEASES}/nodeprof", {"preconditions": {"uid": "other"}})
        self.assertEqual((status, body["reason"]), (409, "Conflict"))
        status, body = self.send("DELETE", f"{self.LEASES}/nodeprof",
                                 {"preconditions": {"uid": created["metadata"]["uid"]}})
        self.assertEqual(status, 200)
        self.assertEqual(w.event()["type"], "DELETED")
        self.assertEqual(self.send("DELETE", f"{self.LEASES}/nodeprof")[0], 404)

    def test_forbid_fault_answers_403_naming_the_rule(self):
        self.faults(forbid=[{"verb": "update", "resource": "profilingpolicies/status"}])
        _, created = self.send("POST", self.POLICIES, self.policy("cpu"))
        status, body = self.send("PUT", f"{self.POLICIES}/cpu/status", created)
        self.assertEqual(status, 403)
        self.assertIn('cannot update resource "profilingpolicies" with subresource "status" in API group '
                      '"nodeprof.dev" at the cluster scope', body["message"])
        self.assertEqual(self.send("PUT", f"{self.POLICIES}/cpu", created)[0], 200, "only that rule is denied")
        self.faults(reset=True)
        self.assertEqual(self.send("PUT", f"{self.POLICIES}/cpu/status",
                                   self.get(f"{self.POLICIES}/cpu")[1])[0], 200)

    def test_bulk_objects(self):
        reply = self.control("POST", "/objects", [pod(f"p{i}") for i in range(300)])
        self.assertEqual(reply["stored"], 300)
        status, body, _ = self.get("/api/v1/pods?limit=1000")
        self.assertEqual(len(body["items"]), 300)


class ConnectionFaultTests(APITestBase):
    """Keep-alive closes and restarts: what a client meets between requests."""

    def raw_request(self, sock, path="/api/v1/pods"):
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())

    def read_response(self, sock):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        while len(rest) < length:
            rest += sock.recv(65536)
        return int(head.split()[1])

    def test_idle_keepalive_connection_is_closed_silently(self):
        self.faults(keepalive_timeout=0.3)
        sock = socket.create_connection(("127.0.0.1", self.srv.api_port), timeout=5)
        self.addCleanup(sock.close)
        self.raw_request(sock)
        self.assertEqual(self.read_response(sock), 200)
        start = time.monotonic()
        self.assertEqual(sock.recv(1), b"", "closed without a byte")
        self.assertGreaterEqual(time.monotonic() - start, 0.2)
        # A connection in use within the idle time stays open.
        sock2 = socket.create_connection(("127.0.0.1", self.srv.api_port), timeout=5)
        self.addCleanup(sock2.close)
        for _ in range(3):
            self.raw_request(sock2)
            self.assertEqual(self.read_response(sock2), 200)
            time.sleep(0.1)

    def test_close_on_reuse_drops_the_request_that_crosses_the_close(self):
        self.faults(keepalive_timeout=0, keepalive_close_on_reuse=True)
        sock = socket.create_connection(("127.0.0.1", self.srv.api_port), timeout=5)
        self.addCleanup(sock.close)
        self.raw_request(sock)
        self.assertEqual(self.read_response(sock), 200, "a connection's first request is answered")
        self.raw_request(sock, "/api/v1/pods?limit=1")
        self.assertIsNone(self.read_response(sock), "the reused connection closes with no answer")
        log = self.control("GET", "/requests")
        self.assertEqual([r.get("dropped", False) for r in log], [False, True])
        self.assertEqual(log[1]["query"], {"limit": "1"})
        # A new connection is served.
        self.assertEqual(self.get("/api/v1/pods")[0], 200)

    def test_restart_cuts_streams_and_compacts_history(self):
        self.put(pod("a"))
        rv = self.control("GET", "/state")["resource_version"]
        w = self.watch(f"watch=1&resourceVersion={rv}")
        self.wait_watches(1)
        idle = socket.create_connection(("127.0.0.1", self.srv.api_port), timeout=5)
        self.addCleanup(idle.close)
        self.raw_request(idle)
        self.assertEqual(self.read_response(idle), 200)
        reply = self.faults(restart=True)
        self.assertGreaterEqual(reply["connections_cut"], 2)
        with self.assertRaises((EOFError, ConnectionError)):
            while w.line() is not None:
                pass
        self.assertFalse(w.ended, "no terminating chunk: the stream was cut")
        self.assertEqual(idle.recv(1), b"")
        self.wait_watches(0)
        w2 = self.watch(f"watch=1&resourceVersion={rv}")
        e = w2.event()
        self.assertEqual((e["type"], e["object"]["code"]), ("ERROR", 410))
        self.assertEqual(self.get("/api/v1/pods")[0], 200, "the server serves again at once")


class CLITests(unittest.TestCase):
    @unittest.skipUnless(shutil.which("openssl"), "needs openssl")
    def test_cli_tls_ready_line_and_sigterm_with_blocked_signals(self):
        with tempfile.TemporaryDirectory() as d:
            cert, key = make_cert(d)
            proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "apiserver.py"), "--port", "0", "--control-port", "0",
                 "--tls-cert", cert, "--tls-key", key, "--token", "a", "--token", "b"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT}))
            try:
                ready = read_ready_line(proc)
                self.assertEqual(set(ready), {"api_port", "control_port", "api_url"})
                self.assertEqual(ready["api_url"], f"https://127.0.0.1:{ready['api_port']}")
                ctx = ssl.create_default_context(cafile=cert)
                c = http.client.HTTPSConnection("127.0.0.1", ready["api_port"], context=ctx, timeout=5)
                for token, expected in (("b", 200), ("a", 200), ("c", 401)):
                    c.request("GET", "/api/v1/pods", headers={"Authorization": f"Bearer {token}"})
                    r = c.getresponse()
                    r.read()
                    self.assertEqual(r.status, expected)
                c.close()
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=5), 0)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
                proc.stderr.close()


def cgroup2_root():
    try:
        import fakenode
        return fakenode.find_cgroup2_root()
    except Exception:
        return None


CGROUP_ROOT = cgroup2_root()
NEEDS_ROOT = unittest.skipUnless(os.geteuid() == 0 and CGROUP_ROOT, "needs root and a cgroup v2 mount")
HEX64 = "[0-9a-f]{64}"


def proc_cgroup_v2(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line.strip()[3:]
    return None


@NEEDS_ROOT
class NodeTests(unittest.TestCase):
    def setUp(self):
        import fakenode
        self.api = apiserver.FakeAPIServer(tokens=[TOKEN]).start()
        self.node = fakenode.FakeNode(self.api, "node-under-test")
        self.addCleanup(self.api.stop)
        self.addCleanup(self.node.close)

    def control(self, method, path, body=None, expect=200):
        c = http.client.HTTPConnection("127.0.0.1", self.api.control_port, timeout=10)
        c.request(method, path, body=json.dumps(body) if body is not None else None)
        r = c.getresponse()
        data = json.loads(r.read())
        c.close()
        self.assertEqual(r.status, expect, data)
        return data

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.api.api_port, timeout=10)
        c.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        r = c.getresponse()
        data = json.loads(r.read())
        c.close()
        return r.status, data

    def check_container(self, info, pattern):
        self.assertRegex(info["cgroup_path"], pattern)
        self.assertTrue(info["cgroup_path"].startswith("/"))
        directory = CGROUP_ROOT + info["cgroup_path"]
        self.assertTrue(os.path.isdir(directory))
        self.assertEqual(info["cgroup_id"], os.stat(directory).st_ino)
        self.assertEqual(proc_cgroup_v2(info["pid"]), info["cgroup_path"])
        with open(os.path.join(directory, "cgroup.procs")) as f:
            self.assertIn(str(info["pid"]), f.read().split())
        return directory

    def test_deployment_pod_systemd_burstable_containerd(self):
        w = RawWatch(self.api.api_port, "/api/v1/pods?watch=1&fieldSelector=spec.nodeName%3Dnode-under-test")
        self.addCleanup(w.close)
        res = self.control("POST", "/node/pods", {
            "name": "web-7d4b9c8f5-x2x4k", "namespace": "shop", "owner": {"kind": "Deployment", "name": "web"},
            "style": "systemd", "qos": "burstable", "runtime": "containerd",
            "labels": {"app.kubernetes.io/name": "web"}, "annotations": {"a/b": "c"},
            "containers": [
                {"name": "app", "image": "registry.example.com/shop/web:1.4.2", "command": ["sleep", "30"]},
                {"name": "side", "image": "busybox", "command": ["/bin/sh", "-c", "sleep 30"]}]})
        uid_ = res["uid"].replace("-", "_")
        dirs = []
        for info in res["containers"]:
            pattern = (rf"^/kubepods\.slice/kubepods-burstable\.slice/kubepods-burstable-pod{uid_}\.slice/"
                       rf"cri-containerd-{info['container_id']}\.scope$")
            self.assertRegex(info["container_id"], f"^{HEX64}$")
            dirs.append(self.check_container(info, pattern))
        self.assertNotEqual(res["containers"][0]["cgroup_id"], res["containers"][1]["cgroup_id"])
        # The kubelet's order: Pending without container IDs, then Running with them.
        first, second = w.event(), w.event()
        self.assertEqual((first["type"], first["object"]["status"]["phase"]), ("ADDED", "Pending"))
        self.assertNotIn("containerID", first["object"]["status"]["containerStatuses"][0])
        self.assertEqual((second["type"], second["object"]["status"]["phase"]), ("MODIFIED", "Running"))
        status, pod = self.get("/api/v1/namespaces/shop/pods/web-7d4b9c8f5-x2x4k")
        self.assertEqual(status, 200)
        self.assertEqual(pod, second["object"])
        md = pod["metadata"]
        self.assertEqual(md["uid"], res["uid"])
        self.assertEqual(md["labels"]["pod-template-hash"], "7d4b9c8f5")
        self.assertEqual(md["labels"]["app.kubernetes.io/name"], "web")
        self.assertEqual(md["annotations"], {"a/b": "c"})
        self.assertEqual(pod["spec"]["nodeName"], "node-under-test")
        self.assertEqual(pod["status"]["qosClass"], "Burstable")
        self.assertTrue(pod["status"]["podIP"] and pod["status"]["hostIP"] and pod["status"]["startTime"])
        statuses = {cs["name"]: cs for cs in pod["status"]["containerStatuses"]}
        for info in res["containers"]:
            cs = statuses[info["name"]]
            self.assertEqual(cs["containerID"], "containerd://" + info["container_id"])
            self.assertTrue(cs["ready"] and cs["started"])
            self.assertIn("startedAt", cs["state"]["running"])
            self.assertRegex(cs["imageID"], f"@sha256:{HEX64}$")
        self.assertTrue(statuses["app"]["imageID"].startswith("registry.example.com/shop/web@sha256:"))
        ref = md["ownerReferences"][0]
        self.assertEqual((ref["kind"], ref["name"], ref["apiVersion"], ref["controller"], ref["blockOwnerDeletion"]),
                         ("ReplicaSet", "web-7d4b9c8f5", "apps/v1", True, True))
        status, rs = self.get("/apis/apps/v1/namespaces/shop/replicasets/web-7d4b9c8f5")
        self.assertEqual((status, rs["metadata"]["uid"]), (200, ref["uid"]))
        dref = rs["metadata"]["ownerReferences"][0]
        status, dep = self.get("/apis/apps/v1/namespaces/shop/deployments/web")
        self.assertEqual((dref["kind"], dref["name"], dref["uid"]), ("Deployment", "web", dep["metadata"]["uid"]))

        # Deletion: terminating MODIFIED, then DELETED; processes and cgroups gone.
        pids = [c["pid"] for c in res["containers"]]
        out = self.control("DELETE", "/node/pods/shop/web-7d4b9c8f5-x2x4k")
        self.assertEqual(out["uid"], res["uid"])
        types = []
        while True:
            e = w.event()
            types.append(e["type"])
            if e["type"] == "DELETED":
                break
        self.assertEqual(types[0], "MODIFIED")
        self.assertIn("deletionTimestamp", e["object"]["metadata"])
        for d in dirs:
            self.assertFalse(os.path.exists(d))
        self.assertFalse(os.path.exists(os.path.dirname(dirs[0])))
        for pid in pids:
            self.assertFalse(os.path.exists(f"/proc/{pid}") and proc_cgroup_v2(pid) in [c["cgroup_path"] for c in res["containers"]])
        self.assertEqual(self.get("/api/v1/namespaces/shop/pods/web-7d4b9c8f5-x2x4k")[0], 404)
        self.control("DELETE", "/node/pods/shop/web-7d4b9c8f5-x2x4k", expect=404)

    def test_cgroup_shapes(self):
        cases = [
            ("cgroupfs", "burstable", "containerd", r"^/kubepods/burstable/pod{uid}/{cid}$"),
            ("cgroupfs", "guaranteed", "cri-o", r"^/kubepods/pod{uid}/crio-{cid}$"),
            ("cgroupfs", "besteffort", "docker", r"^/kubepods/besteffort/pod{uid}/{cid}$"),
            ("systemd", "guaranteed", "cri-o", r"^/kubepods\.slice/kubepods-pod{uid_}\.slice/crio-{cid}\.scope$"),
            ("systemd", "besteffort", "docker",
             r"^/kubepods\.slice/kubepods-besteffort\.slice/kubepods-besteffort-pod{uid_}\.slice/docker-{cid}\.scope$"),
        ]
        schemes = {"containerd": "containerd://", "cri-o": "cri-o://", "docker": "docker://"}
        for i, (style, qos, runtime, pattern) in enumerate(cases):
            with self.subTest(style=style, qos=qos, runtime=runtime):
                res = self.control("POST", "/node/pods", {
                    "name": f"p{i}", "namespace": "t", "style": style, "qos": qos, "runtime": runtime,
                    "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "30"]}]})
                info = res["containers"][0]
                expected = pattern.format(uid=re.escape(res["uid"]), uid_=res["uid"].replace("-", "_"),
                                          cid=info["container_id"])
                d = self.check_container(info, expected)
                pod = self.get(f"/api/v1/namespaces/t/pods/p{i}")[1]
                self.assertEqual(pod["status"]["containerStatuses"][0]["containerID"],
                                 schemes[runtime] + info["container_id"])
                self.assertEqual(pod["status"]["qosClass"].lower(), qos)
                self.assertNotIn("ownerReferences", pod["metadata"])
                self.control("POST", "/node/delete-pod", {"namespace": "t", "name": f"p{i}"})
                self.assertFalse(os.path.exists(d))

    def test_owner_chains(self):
        res = self.control("POST", "/node/pods", {"namespace": "b", "owner": {"kind": "CronJob", "name": "report"},
                                                   "qos": "besteffort"})
        pod = self.get(f"/api/v1/namespaces/b/pods/{res['name']}")[1]
        jref = pod["metadata"]["ownerReferences"][0]
        self.assertEqual(jref["kind"], "Job")
        self.assertRegex(jref["name"], r"^report-\d+$")
        self.assertEqual(abs(int(jref["name"].split("-")[1]) - time.time() // 60) <= 1, True)
        self.assertEqual(pod["metadata"]["labels"]["job-name"], jref["name"])
        job = self.get(f"/apis/batch/v1/namespaces/b/jobs/{jref['name']}")[1]
        self.assertEqual(job["metadata"]["uid"], jref["uid"])
        cref = job["metadata"]["ownerReferences"][0]
        cron = self.get("/apis/batch/v1/namespaces/b/cronjobs/report")[1]
        self.assertEqual((cref["kind"], cref["uid"]), ("CronJob", cron["metadata"]["uid"]))
        for kind, plural in (("StatefulSet", "statefulsets"), ("DaemonSet", "daemonsets")):
            res = self.control("POST", "/node/pods", {"namespace": "b", "owner": {"kind": kind, "name": "x" + kind.lower()}})
            pod = self.get(f"/api/v1/namespaces/b/pods/{res['name']}")[1]
            ref = pod["metadata"]["ownerReferences"][0]
            owner = self.get(f"/apis/apps/v1/namespaces/b/{plural}/x{kind.lower()}")[1]
            self.assertEqual((ref["kind"], ref["uid"]), (kind, owner["metadata"]["uid"]))
        res = self.control("POST", "/node/pods", {"namespace": "b", "owner": {"kind": "Job", "name": "once"}})
        pod = self.get(f"/api/v1/namespaces/b/pods/{res['name']}")[1]
        job = self.get("/apis/batch/v1/namespaces/b/jobs/once")[1]
        self.assertEqual(pod["metadata"]["ownerReferences"][0]["uid"], job["metadata"]["uid"])
        self.assertNotIn("ownerReferences", job["metadata"])

    def test_close_kills_and_removes_everything(self):
        res = self.control("POST", "/node/pods", {"name": "a", "namespace": "n", "style": "cgroupfs",
                                                   "sandbox": True, "runtime": "cri-o",
                                                   "containers": [{"name": "c", "command": ["sleep", "30"]}]})
        info = res["containers"][0]
        d = CGROUP_ROOT + info["cgroup_path"]
        self.assertTrue(os.path.isdir(d))
        sandbox = res["sandbox"]
        self.check_container(sandbox, rf"^/kubepods/burstable/pod{res['uid']}/crio-{sandbox['container_id']}$")
        pod = self.get("/api/v1/namespaces/n/pods/a")[1]
        ids = [cs["containerID"] for cs in pod["status"]["containerStatuses"]]
        self.assertEqual(ids, ["cri-o://" + info["container_id"]])
        self.node.close()
        self.assertFalse(os.path.exists(d))
        self.assertFalse(os.path.exists(CGROUP_ROOT + sandbox["cgroup_path"]))
        self.assertFalse(os.path.exists(os.path.dirname(d)))
        self.assertNotEqual(proc_cgroup_v2(info["pid"]) if os.path.exists(f"/proc/{info['pid']}") else None,
                            info["cgroup_path"])


@NEEDS_ROOT
class FakeNodeCLITests(unittest.TestCase):
    def test_cli_demo_kubeconfig_and_sigterm_cleanup(self):
        with tempfile.TemporaryDirectory() as d:
            kubeconfig = os.path.join(d, "kubeconfig")
            proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "fake-node"), "--node-name", "cli-node", "--token", "tok",
                 "--kubeconfig-out", kubeconfig, "--demo"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT}))
            try:
                ready = read_ready_line(proc)
                self.assertEqual(ready["node_name"], "cli-node")
                self.assertEqual(ready["kubeconfig"], kubeconfig)
                with open(kubeconfig) as f:
                    text = f.read()
                self.assertIn(f'server: "{ready["api_url"]}"', text)
                self.assertIn('token: "tok"', text)
                self.assertIn("current-context: fake-node", text)
                c = http.client.HTTPConnection("127.0.0.1", ready["api_port"], timeout=5)
                c.request("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dcli-node",
                          headers={"Authorization": "Bearer tok"})
                pods = json.loads(c.getresponse().read())["items"]
                c.close()
                self.assertEqual(len(pods), 3)
                dirs = [CGROUP_ROOT + ci["cgroup_path"] for p in ready["demo_pods"] for ci in p["containers"]]
                self.assertTrue(dirs and all(os.path.isdir(x) for x in dirs))
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=10), 0)
                for x in dirs:
                    self.assertFalse(os.path.exists(x))
                    self.assertFalse(os.path.exists(os.path.dirname(x)))
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
                proc.stderr.close()


if __name__ == "__main__":
    unittest.main()
