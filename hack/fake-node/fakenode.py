"""A simulated Kubernetes node: a fake API server plus real cgroup v2 directories and real
processes shaped like the kubelet's pods. See README.md.

Needs root (it creates cgroups and moves processes into them). Stdlib only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import ctypes
import errno
import hashlib
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apiserver  # noqa: E402
from apiserver import APIError, FakeAPIServer, log, now_rfc3339  # noqa: E402

# The alphabet Kubernetes uses for generated name suffixes and hashes (no vowels, no 0/1/3).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
RUNTIME_SCHEME = {"containerd": "containerd", "cri-o": "cri-o", "docker": "docker"}
SYSTEMD_PREFIX = {"containerd": "cri-containerd", "cri-o": "crio", "docker": "docker"}
QOS_CLASS = {"burstable": "Burstable", "besteffort": "BestEffort", "guaranteed": "Guaranteed"}
OWNER_API = {"Deployment": "apps/v1", "ReplicaSet": "apps/v1", "StatefulSet": "apps/v1",
             "DaemonSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1"}
STALE_PARENTS = [  # deepest first; removed at exit only if empty
    "kubepods.slice/kubepods-burstable.slice", "kubepods.slice/kubepods-besteffort.slice", "kubepods.slice",
    "kubepods/burstable", "kubepods/besteffort", "kubepods",
]
PR_SET_PDEATHSIG = 1


def find_cgroup2_root(mountinfo: str = "/proc/self/mountinfo") -> str:
    """The mount point of the cgroup v2 hierarchy (e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified)."""
    with open(mountinfo) as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split(" ", 1)[0] == "cgroup2":
                return pre.split(" ")[4].replace("\\040", " ")
    raise RuntimeError("no cgroup2 mount in /proc/self/mountinfo (use --cgroup-root)")


def safe_suffix(n: int, rng=random) -> str:
    return "".join(rng.choice(SAFE_ALPHABET) for _ in range(n))


def safe_hash(text: str, n: int = 10) -> str:
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    out = []
    for _ in range(n):
        digest, r = divmod(digest, len(SAFE_ALPHABET))
        out.append(SAFE_ALPHABET[r])
    return "".join(out)


def normalize_image(image: str) -> tuple[str, str]:
    """-> (normalized reference as containerd reports it, repository without tag/digest)."""
    name, digest = (image.split("@", 1) + [""])[:2]
    last = name.rsplit("/", 1)[-1]
    tag = ""
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + (name if "/" in name else "library/" + name)
    ref = name + (f"@{digest}" if digest else f":{tag or 'latest'}")
    return ref, name


class PodRecord:
    def __init__(self, namespace, name, uid):
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.dirs: list[str] = []  # cgroup dirs this pod created (absolute), parents first
        self.procs: list[subprocess.Popen] = []
        self.containers: list[dict] = []
        self.sandbox: dict | None = None


class FakeNode:
    def __init__(self, api: FakeAPIServer, node_name: str = "fake-node-1", cgroup_root: str | None = None,
                 host_ip: str = "10.0.0.10"):
        self.api = api
        self.node_name = node_name
        self.root = cgroup_root or find_cgroup2_root()
        self.host_ip = host_ip
        self.lock = threading.RLock()
        self.pods: dict[tuple[str, str], PodRecord] = {}
        self.shared_dirs: list[str] = []  # parents (kubepods...) this process created
        self.next_ip = 2
        self.closed = False
        # One long-lived thread forks every container: PR_SET_PDEATHSIG fires when the forking
        # *thread* exits, so the children die with us even if we are SIGKILLed.
        self.spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="spawner")
        self._libc = ctypes.CDLL(None, use_errno=True)
        api.add_control_route("POST", "/node/pods", self._c_create)
        api.add_control_route("GET", "/node/pods", lambda p, b: (200, self.describe()))
        api.add_control_route("DELETE", "/node/pods/", self._c_delete_path)
        api.add_control_route("POST", "/node/delete-pod", self._c_delete_body)
        api.put({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": node_name,
            "labels": {"kubernetes.io/hostname": node_name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "fake"}},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": host_ip},
                                     {"type": "Hostname", "address": node_name}],
                       "nodeInfo": {"containerRuntimeVersion": "containerd://1.7.20",
                                    "kubeletVersion": "v1.31.0", "operatingSystem": "linux",
                                    "architecture": "amd64"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})

    # ------------------------------------------------------------ cgroups

    def _mkdirs(self, rel: str, pod: PodRecord, pod_level: int) -> str:
        """mkdir -p root/rel; remembers what it created. Components from index pod_level on
        belong to the pod; shallower ones are shared parents."""
        parts = rel.split("/")
        for attempt in range(5):
            try:
                path = self.root
                for i, part in enumerate(parts):
                    path = os.path.join(path, part)
                    try:
                        os.mkdir(path)
                    except FileExistsError:
                        continue
                    with self.lock:
                        (pod.dirs if i >= pod_level else self.shared_dirs).append(path)
                return path
            except FileNotFoundError:  # a parent was removed under us (another instance's cleanup)
                time.sleep(0.05 * (attempt + 1))
        raise APIError(500, f"cannot create cgroup {rel}")

    @staticmethod
    def cgroup_layout(style: str, qos: str, runtime: str, uid: str, cid: str) -> tuple[list[str], str]:
        """-> (pod-level path components, container leaf name), as the kubelet shapes them."""
        if style == "systemd":
            uid_ = uid.replace("-", "_")
            if qos == "guaranteed":
                pod_parts = ["kubepods.slice", f"kubepods-pod{uid_}.slice"]
            else:
                pod_parts = ["kubepods.slice", f"kubepods-{qos}.slice", f"kubepods-{qos}-pod{uid_}.slice"]
            return pod_parts, f"{SYSTEMD_PREFIX[runtime]}-{cid}.scope"
        if style == "cgroupfs":
            pod_parts = ["kubepods"] + ([] if qos == "guaranteed" else [qos]) + [f"pod{uid}"]
            return pod_parts, (f"crio-{cid}" if runtime == "cri-o" else cid)
        raise APIError(400, f"style must be systemd or cgroupfs, not {style!r}")

    def _rmdir(self, path: str, wait: float = 2.0) -> bool:
        deadline = time.monotonic() + wait
        while True:
            try:
                os.rmdir(path)
                return True
            except FileNotFoundError:
                return True
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() >= deadline:
                    log(f"fake-node: cannot remove {path}: {e}")
                    return False
                time.sleep(0.02)

    # ------------------------------------------------------------ processes

    def _spawn(self, command: list[str], procs_file: str) -> subprocess.Popen:
        parent = os.getpid()
        libc = self._libc

        def preexec():
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(1)
            with open(procs_file, "w") as f:  # join the container cgroup before exec
                f.write(str(os.getpid()))
            signal.pthread_sigmask(signal.SIG_SETMASK, set())

        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                                preexec_fn=preexec)

    def _kill(self, rec: PodRecord) -> None:
        cgroups = rec.containers + ([rec.sandbox] if rec.sandbox else [])
        for c in cgroups:
            kill_file = os.path.join(self.root, c["cgroup_path"].lstrip("/"), "cgroup.kill")
            try:
                with open(kill_file, "w") as f:
                    f.write("1")
            except OSError:
                pass
        for p in rec.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.kill()
            except ProcessLookupError:
                pass
        for p in rec.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log(f"fake-node: pid {p.pid} did not exit")
        # Anything else still in the container cgroups (forked children in other sessions).
        for c in cgroups:
            procs_file = os.path.join(self.root, c["cgroup_path"].lstrip("/"), "cgroup.procs")
            try:
                with open(procs_file) as f:
                    pids = [int(x) for x in f.read().split()]
            except OSError:
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _teardown(self, rec: PodRecord) -> None:
        self._kill(rec)
        for d in reversed(rec.dirs):
            self._rmdir(d)

    # ------------------------------------------------------------ owners

    def _ensure(self, obj: dict) -> dict:
        """Returns the stored owner object, creating it if missing (keeps its uid)."""
        md = obj["metadata"]
        plural = apiserver.KIND_TO_RESOURCE[(obj["apiVersion"], obj["kind"])]
        key = f"{md['namespace']}/{md['name']}"
        with self.api.store.lock:
            existing = self.api.store.objects[(obj["apiVersion"], plural)].get(key)
            if existing is not None:
                return existing
            return self.api.put(obj)

    @staticmethod
    def _ref(obj: dict) -> dict:
        return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def _owner_chain(self, ns: str, owner: dict | None, name: str | None, labels: dict, template: dict):
        """-> (pod name, ownerReferences, generateName, extra labels, restartPolicy)."""
        if not owner or not owner.get("kind"):
            return name or f"pod-{safe_suffix(5)}", [], None, {}, "Always"
        kind = owner["kind"]
        oname = owner.get("name") or (name or "app").split("-")[0]
        api_version = OWNER_API.get(kind)
        if api_version is None or kind == "ReplicaSet":
            raise APIError(400, f"owner kind must be Deployment, StatefulSet, DaemonSet, Job or CronJob, not {kind!r}")
        sel = {"app": oname}

        def base(kind_, name_, spec, obj_labels=None, annotations=None, owner_obj=None):
            md = {"name": name_, "namespace": ns, "labels": dict(obj_labels or sel)}
            if annotations:
                md["annotations"] = annotations
            if owner_obj is not None:
                md["ownerReferences"] = [self._ref(owner_obj)]
            return {"apiVersion": OWNER_API[kind_], "kind": kind_, "metadata": md, "spec": spec}

        tmpl = {"metadata": {"labels": dict(sel)}, "spec": template}
        if kind == "Deployment":
            m = re.match(rf"^{re.escape(oname)}-([a-z0-9]+)-[a-z0-9]{{5}}$", name or "")
            pth = m.group(1) if m else safe_hash(f"{ns}/{oname}", 10)
            dep = self._ensure(base("Deployment", oname, {
                "replicas": 1, "selector": {"matchLabels": sel}, "template": tmpl,
                "strategy": {"type": "RollingUpdate"}}, annotations={"deployment.kubernetes.io/revision": "1"}))
            rs_labels = {**sel, "pod-template-hash": pth}
            rs = self._ensure(base("ReplicaSet", f"{oname}-{pth}", {
                "replicas": 1, "selector": {"matchLabels": rs_labels},
                "template": {"metadata": {"labels": rs_labels}, "spec": template}},
                obj_labels=rs_labels, owner_obj=dep,
                annotations={"deployment.kubernetes.io/revision": "1", "deployment.kubernetes.io/desired-replicas": "1",
                             "deployment.kubernetes.io/max-replicas": "2"}))
            gen = f"{oname}-{pth}-"
            return name or gen + safe_suffix(5), [self._ref(rs)], gen, rs_labels, "Always"
        if kind == "StatefulSet":
            sts = self._ensure(base("StatefulSet", oname, {
                "replicas": 1, "serviceName": oname, "selector": {"matchLabels": sel}, "template": tmpl}))
            pname = name or f"{oname}-0"
            idx = pname.rsplit("-", 1)[-1] if pname.rsplit("-", 1)[-1].isdigit() else "0"
            extra = {**sel, "controller-revision-hash": f"{oname}-{safe_hash(oname, 10)}",
                     "statefulset.kubernetes.io/pod-name": pname, "apps.kubernetes.io/pod-index": idx}
            return pname, [self._ref(sts)], f"{oname}-", extra, "Always"
        if kind == "DaemonSet":
            ds = self._ensure(base("DaemonSet", oname, {"selector": {"matchLabels": sel}, "template": tmpl}))
            extra = {**sel, "controller-revision-hash": safe_hash(oname, 10), "pod-template-generation": "1"}
            return name or f"{oname}-{safe_suffix(5)}", [self._ref(ds)], f"{oname}-", extra, "Always"
        # Job, or CronJob -> Job
        cron = None
        job_name = oname
        if kind == "CronJob":
            cron = self._ensure(base("CronJob", oname, {
                "schedule": "*/5 * * * *", "concurrencyPolicy": "Allow",
                "jobTemplate": {"spec": {"template": tmpl}}}))
            minutes = int(time.time() // 60)
            m = re.match(rf"^({re.escape(oname)}-\d+)-[a-z0-9]{{5}}$", name or "")
            job_name = m.group(1) if m else f"{oname}-{minutes}"
        job_md_ann = None
        if cron is not None:
            job_md_ann = {"batch.kubernetes.io/cronjob-scheduled-timestamp": now_rfc3339()}
        job_uid = str(uuid.uuid4())
        job_sel = {"batch.kubernetes.io/controller-uid": job_uid}
        job_obj = base("Job", job_name, {
            "parallelism": 1, "completions": 1, "backoffLimit": 6, "selector": {"matchLabels": job_sel},
            "template": tmpl}, obj_labels={**sel, "batch.kubernetes.io/job-name": job_name, "job-name": job_name,
                                           **job_sel, "controller-uid": job_uid},
            annotations=job_md_ann, owner_obj=cron)
        job_obj["metadata"]["uid"] = job_uid
        job = self._ensure(job_obj)
        juid = job["metadata"]["uid"]
        extra = {**sel, "batch.kubernetes.io/controller-uid": juid, "batch.kubernetes.io/job-name": job_name,
                 "controller-uid": juid, "job-name": job_name}
        return name or f"{job_name}-{safe_suffix(5)}", [self._ref(job)], f"{job_name}-", extra, "Never"

    # ------------------------------------------------------------ pods

    def create_pod(self, body: dict) -> dict:
        ns = body.get("namespace") or "default"
        style = body.get("style", "systemd")
        qos = body.get("qos", "burstable")
        runtime = body.get("runtime", "containerd")
        if qos not in QOS_CLASS:
            raise APIError(400, f"qos must be one of {sorted(QOS_CLASS)}")
        if runtime not in RUNTIME_SCHEME:
            raise APIError(400, f"runtime must be one of {sorted(RUNTIME_SCHEME)}")
        if style not in ("systemd", "cgroupfs"):
            raise APIError(400, "style must be systemd or cgroupfs")
        containers_in = body.get("containers") or [{"name": "app", "image": "busybox:1.36",
                                                     "command": ["sleep", "infinity"]}]
        names = [c.get("name") for c in containers_in]
        if not all(names) or len(set(names)) != len(names):
            raise APIError(400, "every container needs a unique name")
        resources = {
            "guaranteed": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
            "burstable": {"requests": {"cpu": "50m", "memory": "32Mi"}},
            "besteffort": {},
        }[qos]
        spec_containers = [{"name": c["name"], "image": c.get("image", "busybox:1.36"),
                            "imagePullPolicy": "IfNotPresent", "resources": copy.deepcopy(resources),
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File"} for c in containers_in]
        user_labels = dict(body.get("labels") or {})
        name, owner_refs, generate_name, owner_labels, restart = self._owner_chain(
            ns, body.get("owner"), body.get("name"), user_labels, {"containers": spec_containers})
        with self.lock:
            if self.closed:
                raise APIError(503, "node is shutting down")
            if (ns, name) in self.pods:
                raise APIError(409, f'pods "{name}" already exists', "AlreadyExists")
            uid = str(uuid.uuid4())
            rec = PodRecord(ns, name, uid)
            self.pods[(ns, name)] = rec
            ip = f"10.244.{self.next_ip // 250}.{self.next_ip % 250 + 2}"
            self.next_ip += 1
        self._ensure_namespace(ns)
        created = now_rfc3339()
        md = {"name": name, "namespace": ns, "uid": uid, "creationTimestamp": created,
              "labels": {**owner_labels, **user_labels}}
        if generate_name:
            md["generateName"] = generate_name
        if body.get("annotations"):
            md["annotations"] = dict(body["annotations"])
        if owner_refs:
            md["ownerReferences"] = owner_refs
        pod = {
            "apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"containers": spec_containers, "nodeName": self.node_name, "restartPolicy": restart,
                     "schedulerName": "default-scheduler", "serviceAccountName": "default",
                     "serviceAccount": "default", "dnsPolicy": "ClusterFirst", "enableServiceLinks": True,
                     "terminationGracePeriodSeconds": 30, "priority": 0,
                     "securityContext": {}, "preemptionPolicy": "PreemptLowerPriority",
                     "tolerations": [
                         {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                          "tolerationSeconds": 300},
                         {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                          "tolerationSeconds": 300}]},
            "status": {"phase": "Pending", "hostIP": self.host_ip, "hostIPs": [{"ip": self.host_ip}],
                       "qosClass": QOS_CLASS[qos], "startTime": created,
                       "conditions": self._conditions(created, ready=False),
                       "containerStatuses": [{
                           "name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                           "restartCount": 0, "started": False, "lastState": {},
                           "state": {"waiting": {"reason": "ContainerCreating"}}} for c in spec_containers]},
        }
        pending_first = body.get("pending_first", True)
        try:
            if pending_first:  # the kubelet reports Pending/ContainerCreating before the IDs exist
                self.api.put(pod)
            statuses = []
            if body.get("sandbox"):  # the pod's pause container: its own scope, not in containerStatuses
                sid = secrets.token_hex(32)
                pod_parts, leaf = self.cgroup_layout(style, qos, runtime, uid, sid)
                rel = "/".join(pod_parts + [leaf])
                path = self._mkdirs(rel, rec, pod_level=len(pod_parts) - 1)
                proc = self.spawner.submit(self._spawn, ["sleep", "infinity"],
                                           os.path.join(path, "cgroup.procs")).result()
                rec.procs.append(proc)
                rec.sandbox = {"name": "POD", "container_id": sid, "pid": proc.pid, "cgroup_path": "/" + rel,
                               "cgroup_id": os.stat(path).st_ino}
            for c_in, c_spec in zip(containers_in, spec_containers):
                cid = secrets.token_hex(32)
                pod_parts, leaf = self.cgroup_layout(style, qos, runtime, uid, cid)
                rel = "/".join(pod_parts + [leaf])
                path = self._mkdirs(rel, rec, pod_level=len(pod_parts) - 1)
                command = c_in.get("command") or ["sleep", "infinity"]
                proc = self.spawner.submit(self._spawn, command, os.path.join(path, "cgroup.procs")).result()
                rec.procs.append(proc)
                info = {"name": c_spec["name"], "container_id": cid, "pid": proc.pid,
                        "cgroup_path": "/" + rel, "cgroup_id": os.stat(path).st_ino}
                rec.containers.append(info)
                started = now_rfc3339()
                ref, repo = normalize_image(c_spec["image"])
                digest = hashlib.sha256(c_spec["image"].encode()).hexdigest()
                if runtime == "docker":
                    image, image_id = c_spec["image"], f"docker-pullable://{repo}@sha256:{digest}"
                else:
                    image, image_id = ref, f"{repo}@sha256:{digest}"
                statuses.append({
                    "name": c_spec["name"], "containerID": f"{RUNTIME_SCHEME[runtime]}://{cid}",
                    "image": image, "imageID": image_id, "ready": True, "restartCount": 0, "started": True,
                    "lastState": {}, "state": {"running": {"startedAt": started}}})
        except BaseException:
            self._teardown(rec)
            with self.lock:
                self.pods.pop((ns, name), None)
            try:
                self.api.delete("v1", "Pod", ns, name)
            except APIError:
                pass
            raise
        pod = copy.deepcopy(pod)
        now = now_rfc3339()
        pod["status"].update({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                              "conditions": self._conditions(created, ready=True, ready_at=now),
                              "containerStatuses": statuses})
        stored = self.api.put(pod)
        result = {"uid": uid, "name": name, "namespace": ns,
                  "resourceVersion": stored["metadata"]["resourceVersion"], "containers": rec.containers}
        if rec.sandbox:
            result["sandbox"] = rec.sandbox
        return result

    @staticmethod
    def _conditions(created: str, ready: bool, ready_at: str | None = None) -> list[dict]:
        t = ready_at or created
        st = "True" if ready else "False"
        conds = [
            {"type": "PodReadyToStartContainers", "status": st, "lastProbeTime": None, "lastTransitionTime": t},
            {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": created},
            {"type": "Ready", "status": st, "lastProbeTime": None, "lastTransitionTime": t},
            {"type": "ContainersReady", "status": st, "lastProbeTime": None, "lastTransitionTime": t},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": created},
        ]
        if not ready:
            for c in conds[2:4]:
                c.update({"reason": "ContainersNotReady"})
        return conds

    def _ensure_namespace(self, ns: str) -> None:
        with self.api.store.lock:
            if ns in self.api.store.objects[("v1", "namespaces")]:
                return
            self.api.put({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                          "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})

    def delete_pod(self, ns: str, name: str, graceful: bool = True) -> dict:
        with self.lock:
            rec = self.pods.pop((ns, name), None)
        if rec is None:
            raise APIError(404, f'pods "{name}" not found', details={"name": name, "kind": "pods"})
        key = f"{ns}/{name}"
        with self.api.store.lock:
            current = self.api.store.objects[("v1", "pods")].get(key)
        if current is not None and graceful:  # as the API does: deletionTimestamp first, DELETED later
            marked = copy.deepcopy(current)
            marked["metadata"]["deletionTimestamp"] = now_rfc3339()
            marked["metadata"]["deletionGracePeriodSeconds"] = 30
            current = self.api.put(marked)
        self._teardown(rec)
        final = None
        if current is not None:
            done = copy.deepcopy(current)
            finished = now_rfc3339()
            for cs in done["status"].get("containerStatuses", []):
                started = cs.get("state", {}).get("running", {}).get("startedAt", finished)
                cs["state"] = {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": started,
                                              "finishedAt": finished, "containerID": cs.get("containerID", "")}}
                cs["ready"] = False
                cs["started"] = False
            self.api.put(done)
            final = self.api.delete("v1", "Pod", ns, name)
        return {"deleted": key, "uid": rec.uid,
                "resourceVersion": final["metadata"]["resourceVersion"] if final else None}

    def describe(self) -> list[dict]:
        with self.lock:
            return [{"namespace": r.namespace, "name": r.name, "uid": r.uid, "containers": r.containers}
                    for r in self.pods.values()]

    def close(self) -> None:
        """Kills every process started here and removes every cgroup directory created here."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            recs = list(self.pods.values())
            self.pods.clear()
        for rec in recs:
            self._teardown(rec)
        for d in reversed(self.shared_dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass  # another fake node may still use it
        for rel in STALE_PARENTS:
            try:
                os.rmdir(os.path.join(self.root, rel))
            except OSError:
                pass
        self.spawner.shutdown(wait=False)

    # ------------------------------------------------------------ control routes

    def _c_create(self, path, body):
        return 200, self.create_pod(body or {})

    def _c_delete_path(self, path, body):
        parts = [urllib.parse.unquote(p) for p in path[len("/node/pods/"):].split("/") if p]
        if len(parts) != 2:
            raise APIError(400, "use DELETE /node/pods/{namespace}/{name}")
        return 200, self.delete_pod(parts[0], parts[1])

    def _c_delete_body(self, path, body):
        body = body or {}
        return 200, self.delete_pod(body.get("namespace") or "default", body.get("name", ""))


DEMO_PODS = [
    {"namespace": "shop", "owner": {"kind": "Deployment", "name": "web"}, "qos": "burstable", "sandbox": True,
     "labels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/version": "1.4.2"},
     "annotations": {"resource.opentelemetry.io/service.name": "shop-web"},
     "containers": [{"name": "app", "image": "registry.example.com/shop/web:1.4.2",
                     "command": ["/bin/sh", "-c", "while :; do :; done"]}]},
    {"namespace": "data", "name": "db-0", "owner": {"kind": "StatefulSet", "name": "db"}, "qos": "guaranteed",
     "sandbox": True,
     "labels": {"app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": "db"},
     "containers": [
         {"name": "postgres", "image": "postgres:16.3",
          "command": ["/bin/sh", "-c", "while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.2; done"]},
         {"name": "exporter", "image": "quay.io/prometheuscommunity/postgres-exporter:v0.15.0",
          "command": ["sleep", "infinity"]}]},
    {"namespace": "batch", "owner": {"kind": "CronJob", "name": "report"}, "qos": "besteffort", "sandbox": True,
     "containers": [{"name": "report", "image": "registry.example.com/batch/report:2024.06",
                     "command": ["/bin/sh", "-c", "while :; do i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done; sleep 1; done"]}]},
]


def write_kubeconfig(path: str, server: str, token: str | None, ca: str | None, name: str = "fake-node") -> None:
    def q(s: str) -> str:
        return json.dumps(s)  # a JSON string is a valid YAML scalar

    lines = [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        f"- name: {name}",
        "  cluster:",
        f"    server: {q(server)}",
    ]
    if ca:
        lines.append(f"    certificate-authority: {q(os.path.abspath(ca))}")
    lines += [
        "users:",
        f"- name: {name}",
        "  user:",
        f"    token: {q(token or '')}",
        "contexts:",
        f"- name: {name}",
        "  context:",
        f"    cluster: {name}",
        f"    user: {name}",
        f"current-context: {name}",
        "",
    ]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def main(argv=None) -> int:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    p = argparse.ArgumentParser(prog="fake-node", description="A simulated Kubernetes node (needs root)")
    p.add_argument("--api-port", type=int, default=0)
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--token", action="append", default=None,
                   help="accepted bearer token (repeatable; default: fake-node-token)")
    p.add_argument("--no-auth", action="store_true", help="accept any request, with or without a token")
    p.add_argument("--node-name", default="fake-node-1")
    p.add_argument("--host-ip", default="10.0.0.10", help="status.hostIP of the pods")
    p.add_argument("--cgroup-root", help="cgroup v2 mount point (default: found in /proc/self/mountinfo)")
    p.add_argument("--kubeconfig-out", help="write a kubeconfig for this API server here")
    p.add_argument("--demo", action="store_true", help="create three demo pods")
    apiserver.add_server_args(p)
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    tokens = [] if args.no_auth else (args.token or ["fake-node-token"])
    api = FakeAPIServer(args.host, args.api_port, args.control_port, args.tls_cert, args.tls_key, tokens,
                        args.bookmark_interval, args.history, args.verbose)
    node = FakeNode(api, args.node_name, args.cgroup_root, args.host_ip)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        api.start()
        info = api.ready_info()
        info["node_name"] = args.node_name
        info["cgroup_root"] = node.root
        if tokens:
            info["token"] = tokens[0]
        if args.kubeconfig_out:
            write_kubeconfig(args.kubeconfig_out, api.api_url, tokens[0] if tokens else "any", args.tls_cert)
            info["kubeconfig"] = os.path.abspath(args.kubeconfig_out)
        if args.demo:
            info["demo_pods"] = [node.create_pod(copy.deepcopy(spec)) for spec in DEMO_PODS]
        print(json.dumps(info), flush=True)
        log(f"fake-node {args.node_name}: API {api.api_url}, control http://{args.host}:{api.control_port}, "
            f"cgroups under {node.root}")
        while not stop.is_set():
            stop.wait(0.5)
        log("fake-node: stopping")
    finally:
        node.close()
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
