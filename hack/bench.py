#!/usr/bin/env python3
"""Runs the measurements behind BENCHMARKS.md. Called by hack/bench after a release build.

Every figure is measured in this run, next to its peer on the same load; the commands
that produced them are written beside the figures.
"""
import json
import re
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# hack/bench builds into BENCH_SCRATCH_PATH (default .build) and passes it on.
BIN = os.path.join(ROOT, os.environ.get("BENCH_SCRATCH_PATH", ".build"), "release")
NODEPROF = os.path.join(BIN, "nodeprof")
BENCH = os.path.join(BIN, "nodeprof-bench")
QUICK = "--quick" in sys.argv
# Sections 1 to 7 share their load and the header's run figures: they run together.
CORE_SECTIONS = set(range(1, 8))
TRACE_SECTIONS = {8, 9, 10, 11}


def selected_sections(argv):
    """The sections --only names (`--only 8,9,10`; `1-7` or any of 1 to 7 selects 1 to 7),
    all of them without --only."""
    if "--only" not in argv:
        return CORE_SECTIONS | TRACE_SECTIONS
    at = argv.index("--only")
    if at + 1 >= len(argv):
        sys.exit("bench: --only needs a list of sections, e.g. --only 8,9,10")
    chosen = set()
    for part in argv[at + 1].split(","):
        low, _, high = part.strip().partition("-")
        try:
            numbers = set(range(int(low), int(high or low) + 1))
        except ValueError:
            sys.exit(f"bench: --only {argv[at + 1]}: not a list of section numbers")
        unknown = numbers - CORE_SECTIONS - TRACE_SECTIONS
        if unknown:
            sys.exit(f"bench: --only: no section {min(unknown)} (sections are 1 to 11)")
        chosen |= numbers
    return chosen | CORE_SECTIONS if chosen & CORE_SECTIONS else chosen


SELECTED = selected_sections(sys.argv)
SECONDS = 5 if QUICK else 30
BPF_SECONDS = 5 if QUICK else 20
ENCODE_SECONDS = 10 if QUICK else 60
ENCODE_REPEATS = 5 if QUICK else 7
# Receiver outage for the exporter: seconds of outage, its start, seconds of feeding, and the
# most seconds to wait afterwards for the exporter to send what it holds.
OUTAGE = {"outage": 10, "start": 3, "feed": 20, "drain": 40} if QUICK else {"outage": 60, "start": 5, "feed": 75, "drain": 90}
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
RECEIVER = os.path.join(ROOT, "hack", "otlp", "receiver.py")
CHECK = os.path.join(ROOT, "hack", "otlp", "check.py")
APISERVER = os.path.join(ROOT, "hack", "fake-node", "apiserver.py")
FAKE_NODE = os.path.join(ROOT, "hack", "fake-node", "fake-node")
# Sections 6 and 7 (Kubernetes): repeats and lookups of the cache measurement, pods created
# one at a time for the latency, seconds of the API request count (time scaled down 60x),
# seconds of the agent on the simulated node (and of perf after it).
KUBE = ({"cache_repeats": 3, "lookups": 20000, "latency_pods": 15, "requests_seconds": 20, "agent_seconds": 20}
        if QUICK else
        {"cache_repeats": 5, "lookups": 100000, "latency_pods": 50, "requests_seconds": 60, "agent_seconds": 60})

# More processes next to the burners while recording the profile for section 4, so it holds
# several executables and libraries (interpreters, libcrypto, libz) as a real node would.
EXTRA_LOAD = [
    ([sys.executable, "-c", "while True: sum(i * i for i in range(10000))"], None),
    (["perl", "-e", "while (1) { my $s = join(',', map { $_ * 2 } 1 .. 1000) }"], None),
    (["sh", "-c", "while :; do :; done"], None),
    (["sha256sum", "/dev/zero"], None),
    (["gzip", "-6", "-c"], "/dev/zero"),
]

DEEP = r"""
#include <stdint.h>
#include <string.h>
static volatile uint64_t sink;
__attribute__((noinline)) void store(uint64_t x) { sink = x; }
__attribute__((noinline)) void spin(void) { uint64_t x = sink; for (int i = 0; i < 5000000; i++) x = x * 31 + 1; store(x); }
__attribute__((noinline)) void descend(int d) { volatile char pad[512]; memset((char *)pad, d, sizeof(pad)); if (d == 0) spin(); else descend(d - 1); sink += pad[d % 512]; }
int main(void) { for (;;) descend(39); }
"""

LLVM_SYMBOLIZER = shutil.which("llvm-symbolizer", path=os.path.dirname(os.path.realpath(shutil.which("swift") or "/opt/swift/usr/bin/swift"))) or "llvm-symbolizer"

BURNER = r"""
#include <stdint.h>
static volatile uint64_t sink;
__attribute__((noinline)) static void leaf(int n) { for (int i = 0; i < n; i++) sink = sink * 31 + i; }
__attribute__((noinline)) static void mid(int depth) { if (depth == 0) leaf(100000); else mid(depth - 1); }
int main(void) { for (;;) mid(20); }
"""


def run_measured(argv, **kwargs):
    """Runs argv to completion; returns (wall s, user s, sys s, max RSS KiB, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run peers in a fresh
    # subprocess each (see measure_rss) when the maximum matters.
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, after.ru_maxrss, proc.stdout


def measure_rss(argv):
    """Max RSS (KiB) of argv alone, via a fresh python child so earlier children don't count."""
    code = (
        "import resource,subprocess,sys;"
        "p=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);sys.exit(p.returncode)"
    )
    out = subprocess.run([sys.executable, "-c", code] + argv, stdout=subprocess.PIPE, text=True, check=True)
    return int(out.stdout.strip())


def start_burners(workdir, count, source=BURNER, name="burner"):
    src = os.path.join(workdir, name + ".c")
    exe = os.path.join(workdir, name)
    with open(src, "w") as f:
        f.write(source)
    subprocess.run(["cc", "-O1", "-fno-omit-frame-pointer", "-o", exe, src], check=True)
    return [subprocess.Popen([exe]) for _ in range(count)]


def start_extra_load():
    processes = []
    for argv, stdin in EXTRA_LOAD:
        if shutil.which(argv[0]) is None:
            continue
        source = open(stdin, "rb") if stdin else subprocess.DEVNULL
        processes.append(subprocess.Popen(argv, stdin=source, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return processes


def run_held(argv, when_held):
    """Runs argv, which prints 'recorded' on stderr and then waits for a line on stdin; calls
    when_held() at that point (to stop the load), lets it go on and returns its stdout."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    early = []
    for line in proc.stderr:
        if line.strip() == "recorded":
            break
        early.append(line)
    when_held()
    out, err = proc.communicate("\n")
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({proc.returncode}):\n{''.join(early)}{err}")
    return out


def run_group(argv):
    """Runs a nodeprof-bench subcommand that starts children of its own (fake API server,
    fake node, receiver, agent, perf) in a new process group and returns its stdout. Nothing
    of that group outlives the call: afterwards, and at once on an error or Ctrl-C, the group
    gets SIGTERM (the subcommand stops its children on it, fake-node removes its cgroups),
    then SIGKILL after 20 s."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate()
    finally:
        end_group(proc)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({proc.returncode}):\n{err}")
    return out


def end_group(proc):
    """SIGTERM to the process group of proc (started with start_new_session), SIGKILL to
    whatever is left of it after 20 s; reaps proc. Nothing to do when the group is empty."""
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + 20
    while time.time() < deadline:
        proc.poll()  # a zombie leader still counts as a member of its group
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def check_requests(directory):
    """Runs hack/otlp/check.py on every request file in directory: {file: violation count}."""
    files = sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".bin"))
    out = subprocess.run([PYTHON, CHECK, "--json"] + files, stdout=subprocess.PIPE, text=True).stdout
    result = {}
    for line in out.splitlines():
        entry = json.loads(line)
        result[os.path.basename(entry["file"])] = len(entry.get("violations", [])) if "error" not in entry else -1
    return result


def stop(processes):
    for p in processes:
        p.send_signal(signal.SIGKILL)
        p.wait()


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    perf = subprocess.run(["perf", "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    llvm = subprocess.run([LLVM_SYMBOLIZER, "--version"], stdout=subprocess.PIPE, text=True).stdout
    llvm = next((l.strip() for l in llvm.splitlines() if "version" in l), "llvm-symbolizer")
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "perf": perf,
        "llvm": llvm,
        "date": time.strftime("%Y-%m-%d"),
        "load_at_start": os.getloadavg(),
    }


def main():
    started = time.time()
    work = tempfile.mkdtemp(prefix="nodeprof-bench-")
    results = {"machine": machine(), "quick": QUICK, "sections": sorted(SELECTED)}
    if not SELECTED & CORE_SECTIONS:
        # Only sections of 8 to 10: the others and the header stay as BENCHMARKS.md has them.
        run_trace_sections(results, work)
        results["durations"] = {"total_s": time.time() - started}
        shutil.rmtree(work, ignore_errors=True)
        write_benchmarks(trace_markdown(results), header_from_this_run=False)
        print(json.dumps(results, indent=2))
        return
    burners = start_burners(work, os.cpu_count() or 2)
    try:
        time.sleep(1)
        # 1. BPF cost per sample, whole machine, both CPUs busy.
        cmd = [BENCH, "bpf-cost", "--seconds", str(BPF_SECONDS), "--frequency", "99"]
        results["bpf"] = json.loads(run_measured(cmd)[4])
        results["bpf"]["command"] = " ".join(cmd)
        cmd999 = [BENCH, "bpf-cost", "--seconds", str(BPF_SECONDS // 2), "--frequency", "999"]
        results["bpf999"] = json.loads(run_measured(cmd999)[4])
        results["bpf999"]["command"] = " ".join(cmd999)

        # 2. Agent CPU and RSS against perf record on the same load.
        out = os.path.join(work, "nodeprof.pb.gz")
        rec = [NODEPROF, "record", "--duration", f"{SECONDS}s", "--frequency", "99", "--top", "0", "--output", out]
        wall, user, sys_, _, _ = run_measured(rec)
        rss = measure_rss(rec)
        results["nodeprof"] = {"wall": wall, "user": user, "sys": sys_, "rss_kib": rss, "command": " ".join(rec),
                               "bytes": os.path.getsize(out)}
        perf_data = os.path.join(work, "perf.data")
        perf = ["perf", "record", "-F", "99", "-a", "-g", "-q", "-o", perf_data, "--", "sleep", str(SECONDS)]
        wall, user, sys_, _, _ = run_measured(perf)
        prss = measure_rss(perf)
        results["perf"] = {"wall": wall, "user": user, "sys": sys_, "rss_kib": prss, "command": " ".join(perf),
                           "bytes": os.path.getsize(perf_data)}
        report = ["perf", "report", "-i", perf_data, "--stdio", "--no-children", "-q"]
        wall, user, sys_, _, _ = run_measured(report, stdin=subprocess.DEVNULL)
        results["perf_report"] = {"wall": wall, "user": user, "sys": sys_, "command": " ".join(report)}

        # 4a. OTLP vs pprof on a recording of this machine: burners plus a few more programs.
        # The load stops once the recording is done, before the encoders are timed.
        extra = start_extra_load()
        recorded = os.path.join(work, "otlp-recording")
        cmd = [BENCH, "otlp-encode", "--source", "recording", "--seconds", str(ENCODE_SECONDS), "--frequency", "99",
               "--repeats", str(ENCODE_REPEATS), "--hold-after-recording", "--write-requests", recorded]
        try:
            out = run_held(cmd, lambda: stop(burners + extra))
        finally:
            stop(extra)
        results["encode_recording"] = json.loads(out)
        results["encode_recording"]["command"] = " ".join(cmd)
        results["encode_recording"]["load"] = [os.path.basename(a[0]) for a, _ in EXTRA_LOAD if shutil.which(a[0])]
        results["encode_recording"]["check"] = check_requests(recorded)
    finally:
        stop(burners)

    # 4b. OTLP vs pprof on the synthetic 200-process node.
    synthetic = os.path.join(work, "otlp-synthetic")
    cmd = [BENCH, "otlp-encode", "--source", "synthetic", "--seconds", "60", "--frequency", "99", "--processes", "200",
           "--cpus", "16", "--repeats", str(ENCODE_REPEATS), "--write-requests", synthetic]
    results["encode_synthetic"] = json.loads(run_measured(cmd)[4])
    results["encode_synthetic"]["command"] = " ".join(cmd)
    results["encode_synthetic"]["check"] = check_requests(synthetic)

    # 5. Exporter memory through a receiver outage: HTTP and gRPC side by side; HTTP with the
    # receiver up throughout as a baseline; and HTTP again with glibc returning every freed
    # request to the OS at once (a fixed mmap threshold), so RSS follows live memory. Four
    # processes at the same time, each with its own receiver.
    runs = {}
    mmap_now = {"MALLOC_MMAP_THRESHOLD_": "131072"}
    for name, transport, outage, env in (("http", "http", OUTAGE["outage"], {}),
                                         ("grpc", "grpc", OUTAGE["outage"], {}),
                                         ("baseline", "http", 0, {}),
                                         ("http_mmap", "http", OUTAGE["outage"], mmap_now)):
        cmd = [BENCH, "export-outage", "--transport", transport, "--queue-limit-kib", "4096",
               "--interval-ms", "500", "--outage-seconds", str(outage),
               "--outage-start-seconds", str(OUTAGE["start"]), "--feed-seconds", str(OUTAGE["feed"]),
               "--drain-seconds", str(OUTAGE["drain"]),
               "--receiver-log", os.path.join(work, f"receiver-{name}.log")]
        out = open(os.path.join(work, f"outage-{name}.json"), "w+")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True, env=dict(os.environ, **env))
        shown = " ".join(f"{k}={v}" for k, v in env.items())
        runs[name] = ((shown + " " if shown else "") + " ".join(cmd), out, proc)
    for name, (command, out, proc) in runs.items():
        _, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"bench: {command} failed ({proc.returncode}):\n{err}")
        out.seek(0)
        results["outage_" + name] = json.load(out)
        results["outage_" + name]["command"] = command
        out.close()

    # 1b. BPF cost on stacks of 40 frames of 512 bytes (past the walker's bulk copy).
    burners = start_burners(work, os.cpu_count() or 2, DEEP, "deep")
    try:
        time.sleep(1)
        cmd = [BENCH, "bpf-cost", "--seconds", str(BPF_SECONDS), "--frequency", "99"]
        results["bpfdeep"] = json.loads(run_measured(cmd)[4])
        results["bpfdeep"]["command"] = " ".join(cmd)
    finally:
        stop(burners)

    # 3. Symbolization: 10,000 addresses in the largest binary, against llvm-symbolizer.
    binary = "/opt/swift/usr/bin/swift-frontend"
    addrs = os.path.join(work, "addresses.txt")
    ours = os.path.join(work, "ours.txt")
    run_measured([BENCH, "symbolize", "--binary", binary, "--addresses", "10000", "--addresses-out", addrs])
    sym = [BENCH, "symbolize", "--binary", binary, "--addresses-in", addrs, "--names-out", ours, "--demangle"]
    wall, user, sys_, _, out = run_measured(sym)
    s = json.loads(out)
    s.update({"wall": wall, "cpu": user + sys_, "command": " ".join(sym), "rss_kib": measure_rss(sym)})
    symbolizer = LLVM_SYMBOLIZER
    llvm = [symbolizer, f"--obj={binary}", "--no-inlines", "--functions=linkage", "--output-style=LLVM"]
    with open(addrs) as f:
        wall, user, sys_, _, out = run_measured(llvm, stdin=f)
    with open(addrs) as f:
        lrss = measure_rss_stdin(llvm, f)
    # Agreement on which symbol each address falls in: mangled names from both tools (the
    # demanglers format differently), a mismatch being an alias when nm puts both names at
    # one address (identical code folding, C1/C2 constructors).
    ours_mangled = os.path.join(work, "ours-mangled.txt")
    run_measured([BENCH, "symbolize", "--binary", binary, "--addresses-in", addrs, "--names-out", ours_mangled])
    with open(addrs) as f:
        mangled = run_measured(llvm + ["--no-demangle"], stdin=f)[4]
    theirs = [block.splitlines()[0] for block in mangled.strip().split("\n\n")]
    with open(ours_mangled) as f:
        mine = f.read().splitlines()
    nm = subprocess.run(["nm", "--defined-only", binary], stdout=subprocess.PIPE, text=True, check=True).stdout
    where = {}
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3:
            where.setdefault(parts[2], parts[0])
    agree = sum(1 for a, b in zip(mine, theirs) if a == b)
    aliases = sum(1 for a, b in zip(mine, theirs) if a != b and a in where and where.get(a) == where.get(b))
    results["symbolize"] = s
    results["llvm"] = {"wall": wall, "cpu": user + sys_, "command": " ".join(llvm) + " < addresses.txt",
                       "rss_kib": lrss, "agree": agree, "aliases": aliases, "compared": min(len(mine), len(theirs))}
    # 6. Kubernetes metadata: the pod cache's memory, how soon a new pod is known, API requests.
    kube_started = time.time()
    results["load_before_kubernetes"] = os.getloadavg()
    cmd = [BENCH, "kube-cache", "--pods", "110", "--repeats", str(KUBE["cache_repeats"]),
           "--lookups", str(KUBE["lookups"])]
    results["kube_cache"] = json.loads(run_group(cmd))
    results["kube_cache"]["command"] = " ".join(cmd)
    cmd = [BENCH, "kube-latency", "--pods", str(KUBE["latency_pods"]), "--existing", "110", "--python", PYTHON,
           "--apiserver", APISERVER]
    results["kube_latency"] = json.loads(run_group(cmd))
    results["kube_latency"]["command"] = " ".join(cmd)
    cmd = [BENCH, "kube-requests", "--seconds", str(KUBE["requests_seconds"]), "--time-scale", "60", "--pods", "110",
           "--cronjob-period-minutes", "15", "--python", PYTHON, "--apiserver", APISERVER]
    results["kube_requests"] = json.loads(run_group(cmd))
    results["kube_requests"]["command"] = " ".join(cmd)

    # 7. The agent on the simulated node, and perf record on the same node after it.
    results["load_before_agent"] = os.getloadavg()
    cmd = [BENCH, "kube-agent", "--nodeprof", NODEPROF, "--seconds", str(KUBE["agent_seconds"]), "--frequency", "19",
           "--export-interval", "10", "--pods", "110", "--burners", "3", "--probes", "3",
           "--perf-seconds", str(KUBE["agent_seconds"]), "--work-dir", os.path.join(work, "kube-agent"),
           "--python", PYTHON, "--fake-node", FAKE_NODE, "--receiver", RECEIVER]
    results["kube_agent"] = json.loads(run_group(cmd))
    results["kube_agent"]["bench_command"] = " ".join(cmd)
    kube_ended = time.time()

    # 8 to 10. Trace correlation: BPF cost of the thread context, the writer, the reader.
    run_trace_sections(results, work)
    results["durations"] = {"total_s": time.time() - started, "kubernetes_s": kube_ended - kube_started}

    shutil.rmtree(work, ignore_errors=True)
    write_markdown(results)
    for name in ("http", "grpc", "baseline", "http_mmap"):
        results["outage_" + name].pop("timeline", None)  # in the markdown as a few points
    results["kube_agent"].pop("readings", None)
    print(json.dumps(results, indent=2))


def measure_rss_stdin(argv, stdin):
    code = (
        "import resource,subprocess,sys;"
        "p=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);sys.exit(p.returncode)"
    )
    out = subprocess.run([sys.executable, "-c", code] + argv, stdin=stdin, stdout=subprocess.PIPE, text=True, check=True)
    return int(out.stdout.strip())


def pct_core(r):
    return 100.0 * (r["user"] + r["sys"]) / r["wall"]


def show(command):
    """A command as a reader would type it: paths relative to the checkout, $WORK for the
    run's scratch directory."""
    command = command.replace(ROOT + "/", "./")
    return re.sub(r"/tmp/nodeprof-bench-[A-Za-z0-9_]+", "$WORK", command)


def write_markdown(r):
    m = r["machine"]
    b, b9, bd = r["bpf"], r["bpf999"], r["bpfdeep"]
    n, p, pr = r["nodeprof"], r["perf"], r["perf_report"]
    s, l = r["symbolize"], r["llvm"]
    mib = lambda kib: kib / 1024.0
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `hack/bench` on {m['date']}: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}, "
        f"{m['perf']}, {m['llvm']}." + (" **Quick run: shortened durations, not for comparison.**" if r["quick"] else ""),
        "Every figure below comes from that one run; peers ran on the same machine under the same load.",
        "Single runs on a shared 2-CPU VM: medians of the BPF cost moved by about 20% between runs while",
        "this file was being prepared; compare figures within one run, not across runs.",
        "Load for sections 1, 2 and the recording of section 4: one CPU burner per CPU (a C loop with a 22-deep",
        "frame-pointer stack), and for the second BPF row a 40-deep recursion with 512-byte frames.",
        f"The whole run took {r['durations']['total_s'] / 60:.0f} minutes (sections 6 and 7: "
        f"{r['durations']['kubernetes_s'] / 60:.1f}); load average when it started: "
        f"{m['load_at_start'][0]:.2f} (1 min), {m['load_at_start'][1]:.2f} (5 min).",
        "",
        "## 1. BPF program cost per sample",
        "",
        "From the kernel's BPF statistics (`BPF_ENABLE_STATS`, the same counters as `kernel.bpf_stats_enabled`):",
        "`run_time_ns / run_cnt` of the sampler program, taken over 500 ms windows; the median is the median",
        "of the window means (the kernel keeps only sums). Target: at most 1.5 us median (the OpenTelemetry",
        "eBPF profiler reports about 3 us for its unwinder; not measured here).",
        "",
        "| load | frequency | samples (program runs) | median | p90 of windows | mean |",
        "|---|---|---|---|---|---|",
        f"| burner: 22 frames of 16 bytes | 99 Hz | {b['runs']} | **{b['median_ns']/1000:.2f} us** | {b['p90_ns']/1000:.2f} us | {b['mean_ns']/1000:.2f} us |",
        f"| burner: 22 frames of 16 bytes | 999 Hz | {b9['runs']} | {b9['median_ns']/1000:.2f} us | {b9['p90_ns']/1000:.2f} us | {b9['mean_ns']/1000:.2f} us |",
        f"| deep: 42 frames, 40 of them 512+ bytes | 99 Hz | {bd['runs']} | **{bd['median_ns']/1000:.2f} us** | {bd['p90_ns']/1000:.2f} us | {bd['mean_ns']/1000:.2f} us |",
        "",
        "The user walk copies 1 KiB of stack at SP in one read and follows frame pointers inside the copy;",
        "frames past it cost one read each, which is why the deep load costs more. Samples that interrupt",
        "user mode skip the kernel stack walk (there is none).",
        "",
        f"Commands: `{show(b['command'])}` (both loads), `{show(b9['command'])}`; samples lost: {b['lost']}, {b9['lost']}, {bd['lost']}.",
        "",
        "## 2. Agent CPU and memory while recording the whole machine at 99 Hz",
        "",
        "CPU is user + system time of the recording process over its wall time, as % of one core.",
        "nodeprof's figure includes draining, symbolizing every sample and writing the pprof file; perf record",
        "only writes raw samples (symbolization happens later in perf report, shown on its own row).",
        "",
        "| tool | wall | user | sys | CPU (% of one core) | peak RSS | output |",
        "|---|---|---|---|---|---|---|",
        f"| nodeprof record | {n['wall']:.1f} s | {n['user']:.2f} s | {n['sys']:.2f} s | **{pct_core(n):.2f}%** | {mib(n['rss_kib']):.1f} MiB | {n['bytes']/1024:.0f} KiB pprof |",
        f"| perf record -g | {p['wall']:.1f} s | {p['user']:.2f} s | {p['sys']:.2f} s | **{pct_core(p):.2f}%** | {mib(p['rss_kib']):.1f} MiB | {p['bytes']/1024:.0f} KiB perf.data |",
        f"| perf report (afterwards) | {pr['wall']:.1f} s | {pr['user']:.2f} s | {pr['sys']:.2f} s | - | - | - |",
        "",
        f"Targets: CPU below perf's ({pct_core(n):.2f}% vs {pct_core(p):.2f}%); peak RSS at most 64 MiB ({mib(n['rss_kib']):.1f} MiB).",
        "",
        f"Commands: `{show(n['command'])}`; `{show(p['command'])}`; `{show(pr['command'])}`.",
        "",
        "## 3. Symbolization of the largest binary on the machine",
        "",
        f"`{s['binary']}` ({s['bytes']/1e6:.0f} MB, {s['symbols']} function symbols): read {s['addresses']} addresses",
        "(spread evenly over its functions, picked beforehand in a separate run), open the file, index its",
        "symbols, resolve every address and demangle the names. Both tools start cold and do the same work.",
        "",
        "| tool | wall | CPU | peak RSS | answers |",
        "|---|---|---|---|---|",
        f"| nodeprof (ELF reader + symbol index + demangler) | {s['wall']*1000:.0f} ms (load {s['load_ms']:.0f} ms, lookups {s['lookup_ms']:.1f} ms) | {s['cpu']*1000:.0f} ms | {mib(s['rss_kib']):.1f} MiB | {s['addresses']} |",
        f"| llvm-symbolizer (the toolchain's) | {l['wall']*1000:.0f} ms | {l['cpu']*1000:.0f} ms | {mib(l['rss_kib']):.1f} MiB | same symbol as ours: {l['agree']}/{l['compared']}; an alias at the same address: {l['aliases']}; different: {l['compared'] - l['agree'] - l['aliases']} |",
        "",
        f"Commands: `{show(s['command'])}`; `{show(l['command'])}`. Wall times include process start-up for both.",
        "Answers are compared on mangled names (a second run of each with demangling off): the two",
        "demanglers format differently (libstdc++'s `> >` and `[clone .cold.1]` against LLVM's `>>` and `(.cold.1)`).",
        "",
    ]
    lines += encoding_section(r["encode_recording"], r["encode_synthetic"], m)
    lines += outage_section(r["outage_http"], r["outage_grpc"], r["outage_baseline"], r["outage_http_mmap"])
    lines += kubernetes_section(r["kube_cache"], r["kube_latency"], r["kube_requests"], r["load_before_kubernetes"])
    lines += agent_node_section(r["kube_agent"], r["load_before_agent"])
    lines += trace_markdown(r)
    write_benchmarks(lines, header_from_this_run=True)


def kib(n):
    return f"{n / 1024:,.0f} KiB"


def percent_change(new, old):
    return f"{100.0 * (new - old) / old:+.1f}%"


def encoding_section(a, b, machine):
    """Section 4: OTLP against pprof, on a recording and on the synthetic node."""
    def rows(name, e):
        p, o = e["pprof"], e["otlp"]
        return [
            f"| {name} | pprof (serialize + gzip 6) | {e['samples']:,} | {p['serialize_ms']:.1f} + {p['gzip_ms']:.1f} = **{p['total_ms']:.1f} ms** | {p['samples_per_second'] / 1000:,.0f}k | {kib(p['raw_bytes'])} ({p['raw_bytes_per_sample']:.1f} B) | **{kib(p['gzip_bytes'])}** ({p['gzip_bytes_per_sample']:.1f} B) |",
            f"| {name} | OTLP (builder + gzip 6) | {e['samples']:,} | {o['encode_ms']:.1f} + {o['gzip_ms']:.1f} = **{o['total_ms']:.1f} ms** | {o['samples_per_second'] / 1000:,.0f}k | {kib(o['raw_bytes'])} ({o['raw_bytes_per_sample']:.1f} B) | **{kib(o['gzip_bytes'])}** ({o['gzip_bytes_per_sample']:.1f} B) |",
        ]

    def verdict(e):
        o, p = e["otlp"]["gzip_bytes"], e["pprof"]["gzip_bytes"]
        return f"{'met' if o <= p else '**missed**'} ({kib(o)} against {kib(p)}, {percent_change(o, p)})"

    def without_timestamps(name, e):
        o, n = e["otlp"], e["otlp_without_timestamps"]
        return (f"| {name} | {kib(o['raw_bytes'])} / {kib(o['gzip_bytes'])} | {kib(n['raw_bytes'])} / {kib(n['gzip_bytes'])} "
                f"| {percent_change(n['raw_bytes'], o['raw_bytes'])} / {percent_change(n['gzip_bytes'], o['gzip_bytes'])} "
                f"| {kib(e['pprof']['gzip_bytes'])} |")

    def grouping(name, e):
        o = e["otlp"]
        one = e["otlp_one_resource"]
        rec, grp = one["recorded_order"], one["grouped_by_process"]
        return [
            f"| {name} | one per process ({o['resource_profiles']}), what the builder does | {kib(o['raw_bytes'])} | {kib(o['gzip_bytes'])} | - |",
            f"| {name} | one for everything, samples grouped by process | {kib(grp['raw_bytes'])} | {kib(grp['gzip_bytes'])} | {percent_change(grp['raw_bytes'], o['raw_bytes'])} / {percent_change(grp['gzip_bytes'], o['gzip_bytes'])} |",
            f"| {name} | one for everything, samples in recorded order | {kib(rec['raw_bytes'])} | {kib(rec['gzip_bytes'])} | {percent_change(rec['raw_bytes'], o['raw_bytes'])} / {percent_change(rec['gzip_bytes'], o['gzip_bytes'])} |",
        ]

    def conformance(e):
        bad = {f: n for f, n in e["check"].items() if n != 0}
        return "all conform" if not bad else "violations: " + ", ".join(f"{f}: {n}" for f, n in bad.items())

    load = ", ".join(a["load"])
    return [
        "## 4. OTLP encoding against pprof",
        "",
        "One profile, encoded both ways; times are medians of "
        f"{a['repeats']} runs in one process. pprof: `PprofEncoder.serialize` then gzip level 6 (the .pb.gz file).",
        "OTLP: `OTLPBuilder.encode` (one shared dictionary, one ResourceProfiles per process, samples merged",
        "by stack and thread, one timestamp per recorded sample) then gzip level 6 of each request, as the HTTP",
        "exporter sends it. Rates are samples per second of the two stages together.",
        "",
        f"- **A, recorded**: this machine ({machine['cpus']} CPUs) at {a['frequency']} Hz for {a['seconds']:.0f} s under the burners",
        f"  plus {load}; {a['samples']:,} samples of {a['processes']} processes ({a['threads']} threads), "
        f"{a['distinct_stacks']:,} distinct stacks, mean depth {a['mean_stack_depth']:.1f}, kernel frames on {100 * a['kernel_sample_share']:.0f}% "
        f"of samples, {a['files']} files. The load stops when the recording ends, before the timing.",
        f"- **B, synthetic node** (`SyntheticNode` in `Sources/nodeprof-bench`, deterministic): {b['seconds']:.0f} s at {b['frequency']} Hz on",
        f"  {b['cpus']} busy CPUs, {b['samples']:,} samples over {b['processes']} processes with a Zipf-like skew (the busiest",
        f"  process takes {100 * b['busiest_process_share']:.0f}%), each running its own executable (own build id and htlhash) plus a subset of",
        "  libc, ld.so, libstdc++, libssl, libcrypto, libz and libm, mapped at per-process ASLR addresses with",
        f"  shared build ids and htlhashes; 20 to 80 stacks per process ({b['distinct_stacks']:,} in all) 8 to 40 user frames deep",
        f"  (mean {b['mean_stack_depth']:.1f} with kernel frames), grown as a tree; {b['threads']} named threads; {b['function_names']:,} distinct function",
        f"  names (application names 20 to 80 characters, C++/Rust/Go styles); kernel frames on {100 * b['kernel_sample_share']:.0f}% of samples.",
        "",
        "| source | format | samples | encode time | samples/s | raw (per sample) | gzip (per sample) |",
        "|---|---|---|---|---|---|---|",
        *rows("A recorded", a),
        *rows("B synthetic", b),
        "",
        f"Target (OTLP gzip no larger than pprof gzip): A {verdict(a)}; B {verdict(b)}.",
        "",
        "The two files do not carry the same information. pprof aggregates: one sample per distinct",
        "(process, thread, stack) with a count and no time. OTLP keeps when each sample was taken, one",
        "fixed64 timestamp per recorded sample, which is what lets a backend slice a profile by time or",
        "join it with traces. To show what that costs, the same profile encoded in the builder's count mode",
        "(`values = [count]` per merged sample, no timestamps: `OTLPBuilder.Configuration.sampleTimestamps = false`,",
        "`nodeprof record --no-timestamps`):",
        "",
        "| source | OTLP raw / gzip | without timestamps raw / gzip | change | pprof gzip |",
        "|---|---|---|---|---|",
        without_timestamps("A recorded", a),
        without_timestamps("B synthetic", b),
        "",
        "Without timestamps OTLP gzip is "
        f"{percent_change(a['otlp_without_timestamps']['gzip_bytes'], a['pprof']['gzip_bytes'])} against pprof for A and "
        f"{percent_change(b['otlp_without_timestamps']['gzip_bytes'], b['pprof']['gzip_bytes'])} for B. A timestamp is 8 raw bytes",
        "per recorded sample whatever the stack, and nanosecond timestamps compress poorly, while stacks and",
        "merged samples are paid for once: the more recorded samples per distinct stack, the larger the",
        f"timestamps' share. A: {a['samples'] / a['distinct_stacks']:.1f} samples per stack;",
        f"B: {b['samples'] / b['distinct_stacks']:.1f}.",
        "",
        "Resource grouping. The builder writes one ResourceProfiles per process. The alternative the spec",
        "allows, one per container or node, is approximated here by encoding a copy of the profile in",
        "which every sample has the same pid: one resource, one Profile. It **loses per-process attribution**",
        "(pid, executable name and path are gone; a real encoder would have to move them into sample",
        "attributes, which would cost bytes back). Two orders of that copy, since gzip depends on it:",
        "",
        "| source | resources | raw | gzip | change raw / gzip |",
        "|---|---|---|---|---|",
        *grouping("B synthetic", b),
        *grouping("A recorded", a),
        "",
        "Grouping by process costs little once the samples are in process order (the resource, scope and",
        "Profile headers, a random 16-byte profile id each); in recorded order one resource is larger after",
        "gzip, because each process's samples and dictionary entries are no longer next to each other.",
        "",
        f"Every request written was checked with `hack/otlp/check.py` (the conformance checker): A {conformance(a)};",
        f"B {conformance(b)}.",
        "",
        f"Commands: `{show(a['command'])}` (A; `--hold-after-recording` lets hack/bench stop the load before",
        f"the timing); `{show(b['command'])}` (B).",
        "",
    ]


def memory_note(x, request_bytes):
    """What the run with freed memory returned at once shows: the largest fall of RSS between two
    readings, and how many requests had been dropped when it came."""
    points = [dict(zip(x["timeline_columns"], p)) for p in x["timeline"]]
    falls = [(a["rss_kib"] - b["rss_kib"], a, b) for a, b in zip(points, points[1:])]
    fall, before, after = max(falls, key=lambda f: f[0])
    lines = [
        f"With `MALLOC_MMAP_THRESHOLD_=131072` glibc unmaps every freed request at once, so RSS follows live",
        f"memory: it rose by {(x['rss_kib']['peak'] - x['rss_kib']['before']) / 1024:.1f} MiB to its peak.",
    ]
    if fall >= 10 * 1024:
        lines += [
            f"Its largest fall, {fall / 1024:.1f} MiB (about {fall * 1024 / request_bytes:.0f} requests) between {before['seconds']:.1f} s and {after['seconds']:.1f} s, came as the",
            f"drop count went from {before['dropped']:.0f} to {after['dropped']:.0f}. `RequestQueue` (Sources/Export/RequestQueue.swift) pops by moving",
            "a head index and keeps the popped requests in its storage until it compacts, after 64 pops; so",
            f"during an outage up to 64 dropped requests (up to {64 * request_bytes / 1048576:.0f} MiB here) stay referenced beyond the queue",
            "limit, which fits this fall and the steady growth before it. Not measured further here.",
        ]
    else:
        lines += ["RSS did not fall by 10 MiB or more at once during that run."]
    return lines


def outage_section(h, g, base, hm):
    """Section 5: exporter memory while the receiver is down."""
    def row(name, x):
        rss, held, req, rec, out = x["rss_kib"], x["held_bytes"], x["requests"], x["receiver"], x["outage"]
        other = sum(n for reason, n in req["dropped_by_reason"].items() if reason != "queue_full")
        books = "yes" if req["accounted"] else "**no**"
        if out["seconds"] == 0:
            resumed = f"no outage ({rec['requests_ok']} requests ok)"
        elif x["resumed"]:
            resumed = f"yes: {rec['requests_after_outage']} requests, the first {rec['first_after_outage_s']:.1f} s after"
        else:
            resumed = "**no**"
        return (f"| {name} | {kib(x['queue_limit_bytes'])} | **{kib(held['peak_exporter'])}** ({'within' if held['within_limit'] else '**over**'}) "
                f"| {rss['before'] / 1024:.1f} / **{rss['peak'] / 1024:.1f}** / {rss['after'] / 1024:.1f} MiB "
                f"| {req['enqueued']} | {req['delivered']} | {req['dropped_by_reason']['queue_full']} + {other} | {req['still_held']} "
                f"| {books} | {resumed} | {req['attempts']} / {req['retries']} |")

    def timeline(x):
        columns = x["timeline_columns"]
        points = [dict(zip(columns, p)) for p in x["timeline"]]
        return points

    def rise(x):
        return f"{(x['rss_kib']['peak'] - x['rss_kib']['before']) / 1024:.1f} MiB"

    def near(points, t):
        best = min(points, key=lambda p: abs(p["seconds"] - t))
        return best if abs(best["seconds"] - t) < 1 else None

    def cell(p):
        if p is None:
            return "- | - | -"
        return f"{kib(p['held_bytes'])} | {p['rss_kib'] / 1024:.1f} MiB | {p['delivered']:.0f} / {p['dropped']:.0f}"

    # Every 10 s (2 s in a quick run), and the last readings (just before the drain ended).
    hp, gp = timeline(h), timeline(g)
    step = 10 if h["outage"]["seconds"] >= 30 else 2
    marks = []
    t = 0
    while t <= max(hp[-1]["seconds"], gp[-1]["seconds"]):
        marks.append(f"| {t} | {cell(near(hp, t))} | {cell(near(gp, t))} |")
        t += step
    marks.append(f"| last reading: {hp[-1]['seconds']:.0f} / {gp[-1]['seconds']:.0f} | {cell(hp[-1])} | {cell(gp[-1])} |")
    rb = h["request_bytes"]
    o = h["outage"]
    return [
        "## 5. Exporter memory through a receiver outage",
        "",
        f"An `OTLPExporter` (queue limit {kib(h['queue_limit_bytes'])}, {h['compression']}, {h['timeout_s']:.0f} s per attempt, default retry policy: backoff",
        f"{h['retry']['initial_backoff_s']:.0f} s growing to {h['retry']['max_backoff_s']:.0f} s, give up after {h['retry']['max_elapsed_s']:.0f} s)",
        f"gets one request every {h['interval_ms']} ms for {h['feed_seconds']:.0f} s; {o['started_s']:.0f} s in, `hack/otlp/receiver.py`",
        f"closes its ingest ports for {o['seconds']:.0f} s (`POST /down`); afterwards the exporter gets up to",
        "its drain time to send what it holds (`flush`). Requests are windows of the synthetic node of section 4,",
        f"encoded beforehand: {kib(rb['mean'])} each ({rb['samples_each']} samples, {rb['resource_profiles_each']} resources), {h['distinct_requests']} distinct ones",
        "cycled, each enqueued as a fresh copy. RSS is the whole bench process (`/proc/self/statm`, sampled",
        "every 250 ms with the exporter's held bytes: queued plus in flight, uncompressed). Four processes ran",
        "at the same time, each with its own receiver: HTTP, gRPC, a baseline (HTTP, receiver up throughout)",
        "and HTTP with glibc returning freed memory at once (see below).",
        "",
        "| transport | queue limit | peak held | RSS before / peak / after | enqueued | delivered | dropped (queue full + other) | still held | books balance | export resumed | attempts / retries |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        row("HTTP", h),
        row("gRPC", g),
        row("HTTP, no outage (baseline)", base),
        row("HTTP, `MALLOC_MMAP_THRESHOLD_=131072`", hm),
        "",
        "Books balance: enqueued = delivered + dropped + still held, from the exporter's statistics after the",
        "drain. Export resumed: requests the receiver recorded as ok after it reopened, and how long after",
        f"reopening the first one came (the receiver reopened {h['outage']['receiver_back_s']:.1f} s and {g['outage']['receiver_back_s']:.1f} s into the runs).",
        "When the queue is full the oldest queued request is dropped for the new one, so what is sent after",
        "the outage is the most recent data. Sending resumes when the backoff delay of the request in flight",
        "runs out (up to 30 s); the exporter does not probe the receiver sooner.",
        "",
        "| t (s) | HTTP held | HTTP RSS | HTTP delivered / dropped | gRPC held | gRPC RSS | gRPC delivered / dropped |",
        "|---|---|---|---|---|---|---|",
        *marks,
        "",
        f"Held bytes stay at or under the limit throughout. RSS rose from before to peak by {rise(h)} (HTTP) and",
        f"{rise(g)} (gRPC) while at most {kib(max(h['held_bytes']['peak_exporter'], g['held_bytes']['peak_exporter']))} was held, and by {rise(base)} in the baseline, which",
        "never holds more than a request or two.",
        *memory_note(hm, h["request_bytes"]["mean"]),
        "",
        f"Commands: `{show(h['command'])}`; the same with `--transport grpc`, with `--outage-seconds 0` (baseline),",
        "and with `MALLOC_MMAP_THRESHOLD_=131072` in the environment.",
        "",
    ]


def met(ok):
    return "met" if ok else "**missed**"


def ms(x):
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms"


def load_note(load):
    return (f"Load average before this section: {load[0]:.2f} (1 min), {load[1]:.2f} (5 min); nothing of this run "
            "was running then.")


def kubernetes_section(c, lat, req, load):
    """Section 6: the pod cache's memory, event latency and API requests."""
    h = c["holders"]
    pods = c["pods"]
    target = c["target_bytes_per_pod"]

    def holder(name, key, bold=False):
        x = h[key]
        per = x["bytes_per_pod"] / 1024
        cell = f"**{per:.2f} KiB**" if bold else f"{per:.2f} KiB"
        return f"| {name} | {kib(x['bytes_median'])} | {cell} |"

    j = c["json"]
    a = c["annotations_per_pod"]
    w = c["workloads"]
    default = h["cache_default"]["bytes_per_pod"]
    configured = h["cache_configured"]["bytes_per_pod"]
    keys = c["configured_keys"]
    lookup = c["lookup"]

    def latency_row(name, x):
        d = x["from_send_ms"]
        return (f"| {name} | {d['count']} | **{ms(d['median'])}** | {ms(d['p90'])} | {ms(d['max'])} "
                f"| {x['before_control_reply']} of {d['count']} | {ms(x['control_round_trip_ms']['median'])} |")

    ours, peer = lat["pod_cache"], lat["python_raw_watch"]
    q = req
    mq, f, cg, lw = q["measured"], q["formula"], q["client_go"], q["list_watch"]
    hours = q["represents_hours"]
    per_hour = lambda n: n / hours
    steady = per_hour(mq["watches"]) + per_hour(mq["job_gets"] - q["initial_cronjob_pods"])
    steady_formula = f["watches_per_hour"] + f["job_gets_per_hour"]
    return [
        "## 6. Kubernetes metadata: pod cache memory, event latency, API requests",
        "",
        f"The pods: {pods} of one node, generated deterministically (`KubePodFixtures` in `Sources/nodeprof-bench`)",
        f"as a busy worker has them: {w.get('Deployment', 0)} Deployment pods (about 40% with an Istio sidecar and its init",
        f"container), {w.get('StatefulSet', 0)} StatefulSet, {w.get('DaemonSet', 0)} DaemonSet (kube-proxy, a CNI agent with three init",
        f"containers, a CSI node plugin with three containers, ...) and {w.get('CronJob', 0)} CronJob-run pods; {c['containers']} containers",
        f"and {c['init_containers']} init containers with ids and image digests; {c['labels_per_pod_mean']:.1f} labels per pod on average",
        "(`app.kubernetes.io/{name,instance,version,component,part-of,managed-by}`, `helm.sh/chart`, `team`,",
        f"`pod-template-hash`, ...), {a['min']} to {a['max']} annotations (mean {a['mean']:.1f}) among them a",
        f"`kubectl.kubernetes.io/last-applied-configuration` of {c['last_applied_bytes_mean'] / 1024:.1f} KiB on average and `prometheus.io/*`;",
        "full specs (env, probes, resources, volumes), Running statuses, ownerReferences and managedFields.",
        f"As JSON: {j['item_bytes_mean'] / 1024:.1f} KiB per pod on average ({j['item_bytes_min'] / 1024:.1f} to "
        f"{j['item_bytes_max'] / 1024:.1f} KiB), {100 * j['managed_fields_share']:.0f}% of it managedFields;",
        f"the LIST reply is {j['list_bytes'] / 1048576:.2f} MiB and decodes in {c['decode_list_ms']:.1f} ms.",
        load_note(load),
        "",
        "### Pod cache memory",
        "",
        "Heap growth (glibc `mallinfo2`: `uordblks + hblkhd`) from before decoding the LIST reply to after the",
        "holder is built, the reply's bytes and the decoded array released: the holder's own cost, malloc",
        f"headers and rounding included. Decoding is the client's: `JSONDecoder` into `Pod`. Median of {c['repeats']}",
        "measurements after one unmeasured round.",
        "",
        f"| holder of the {pods} pods | heap | per pod |",
        "|---|---|---|",
        holder("`PodCache`, the agent's defaults (no `--pod-label` / `--pod-annotation`)", "cache_default", True),
        holder("`PodCache` with labels " + ", ".join(f"`{k}`" for k in keys["labels"]) + " and annotations "
               + ", ".join(f"`{k}`" for k in keys["annotations"]) + " configured", "cache_configured", True),
        holder("decoded `Pod` values by uid (what a cache of decoded objects would keep)", "decoded_pods"),
        holder("each object's JSON as the API server sent it (managedFields included)", "raw_json"),
        "",
        f"Target: at most {target // 1024} KiB per pod: {met(max(default, configured) <= target)} "
        f"({default / 1024:.2f} KiB with the defaults, {configured / 1024:.2f} KiB configured).",
        "The cache keeps per pod its uid, name, namespace, start time, controller, the labels the",
        "attribute rules read (`app.kubernetes.io/{instance,name,version}`, `pod-template-hash`) and the",
        "configured ones, configured and `resource.opentelemetry.io/*` annotations, and per container its",
        "name, id, image and image id; the rest of the object is dropped when it is decoded.",
        "",
        f"Lookup: `attributes(containerID:podUID:)` from outside the actor, as the attribution service asks,",
        f"for each of the node's containers in turn: **{lookup['ns_median'] / 1000:.2f} us** per lookup (median of {c['repeats']}",
        f"runs of {lookup['lookups_per_repeat']:,}), answering {lookup['attributes_per_answer_mean']:.0f} attributes, which are built at each lookup",
        f"(the agent looks up once per process per export window). For scale, an empty call into the actor: {lookup['actor_call_ns_median']:.0f} ns.",
        "",
        f"Command: `{show(c['command'])}`.",
        "",
        "### From a new pod to its attributes",
        "",
        f"`hack/fake-node/apiserver.py` holds the node's {lat['existing']} pods; a `ListWatch<Pod>` (the agent's",
        "defaults: list, then watch with bookmarks) feeds a `PodCache` in the bench process, every event",
        "applied as `PodWatchService` applies it. Pods are then created one at a time through the server's",
        f"control API (`POST /objects`, Running, with container ids; {lat['event_object_bytes_mean'] / 1024:.1f} KiB objects, {lat['gap_ms']} ms apart);",
        "for each, the time from sending the create to `attributes(containerID:)` answering for its first",
        "container. The clock starts before the request is sent because the server queues the watch event",
        "while it stores the object, before it writes the control reply: the event often arrives first",
        "(column \"before the reply\"). That round trip, the Python server's own handling of the create, is",
        "part of every figure; it is shown on its own.",
        "",
        "Peer, same server and pods, run after ours: a raw watch read by a few lines of Python",
        "(`http.client` on the chunked stream, `json.loads` of each line, nothing else; the script is",
        "`KubeLatency.pythonWatcher`), timed from the same start to the line parsed. It is the floor for",
        "any client of this server, not a Kubernetes client.",
        "",
        "| watcher | pods | median | p90 | max | before the reply | control round trip (median) |",
        "|---|---|---|---|---|---|---|",
        latency_row("`ListWatch<Pod>` + `PodCache` (the agent's path)", ours),
        latency_row("Python raw watch (`http.client` + `json.loads`)", peer),
        "",
        f"The first LIST of the {lat['existing']} pods took {lat['list_ms']:.0f} ms to land in the cache. In the agent a window waits",
        "up to `--attribution-grace` (2 s) for a container the cache does not know yet, and the pod's",
        "attributes reach the collector with the window's export: see section 7 for the end to end time.",
        "",
        f"Command: `{show(lat['command'])}`.",
        "",
        "### API requests at steady state",
        "",
        f"The agent's `PodWatchService` (list/watch of `spec.nodeName=<node>`, bookmarks, a `PodCache` with the",
        "agent's Job lookup, `JobOwnersFromAPI`) against `apiserver.py` holding the node's pods, of which",
        f"{q['initial_cronjob_pods']} are CronJob runs. An hour is too long for this script, so time is scaled down "
        f"{q['time_scale']:.0f}x: the watch",
        f"timeouts, drawn from the agent's {q['watch_timeout_s']['agent'][0]}...{q['watch_timeout_s']['agent'][1]} s, are drawn from "
        f"{q['watch_timeout_s']['scaled'][0]}...{q['watch_timeout_s']['scaled'][1]} s, bookmarks come every "
        f"{q['bookmark_interval_s']:g} s instead",
        f"of about a minute, and a CronJob of the node that runs every {q['cronjob_period_minutes']:g} minutes runs every "
        f"{q['cronjob_period_minutes'] * 60 / q['time_scale']:g} s (each",
        "run adds a Job and its pod and removes the previous run's pod). "
        f"{q['seconds']:.0f} s measured stand for {hours:.2f} h. Counted",
        "from the server's request log (`GET /requests`).",
        "",
        f"| requests | measured ({q['seconds']:.0f} s at 1/{q['time_scale']:.0f}) | per hour, measured | per hour, formula | client-go informer (per informer) |",
        "|---|---|---|---|---|",
        f"| LIST pages at start | {mq['list_pages']} | - | {f['list_pages_at_start']} (ceil({q['pods']} / 500 per page)) | 1 (or more pages) |",
        f"| Job GETs at start | {q['initial_cronjob_pods']} | - | {f['job_gets_at_start']} (one per Job of a CronJob pod) | none: an informer would list and watch Jobs |",
        f"| WATCH | {mq['watches']} | **{per_hour(mq['watches']):.1f}** | {f['watches_per_hour']:.0f} (3600 / mean timeout {f['mean_watch_timeout_s']:.0f} s) | {cg['watches_per_hour']:.0f} (3600 / mean {cg['mean_watch_timeout_s']} s) |",
        f"| Job GETs after start | {mq['job_gets'] - q['initial_cronjob_pods']} | **{per_hour(mq['job_gets'] - q['initial_cronjob_pods']):.1f}** | {f['job_gets_per_hour']:.0f} (one per new Job: 60 / {q['cronjob_period_minutes']:g} min) | - |",
        f"| **steady state, all** | | **{steady:.1f}** | {steady_formula:.0f} | {cg['watches_per_hour']:.0f} per informer |",
        "",
        f"Other requests: {mq['other']}; re-lists: {lw['relists']}; bookmarks received: {lw['bookmarks']}; watch restarts: "
        f"{lw['restarts_total']} ({lw['restarts_closed']} ended by their timeout).",
        "A LIST happens again only after a 410 (the resume point fell out of the server's history), which",
        "bookmarks make rare; it costs one request per 500 pods. Scaling inflates the",
        f"gaps between watches: measured mean {q['watch_lifetime_s']['mean']:.0f} s (scaled back), against the {f['mean_watch_timeout_s']:.0f} s mean timeout,",
        "because the fake server checks a watch's deadline every 0.1 s and the reconnection takes the same",
        f"milliseconds whatever the scale; both count {q['time_scale']:.0f} times over here, so the measured rate is slightly low.",
        "client-go: `Reflector` watches with `timeoutSeconds` = `minWatchTimeout` (5 min) x (1 + rand[0,1)),",
        "so 5 to 10 minutes, mean 7.5 (k8s.io/client-go/tools/cache/reflector.go); a resync replays the",
        "informer's cache to its handlers without calling the API; one informer per resource.",
        "",
        f"Command: `{show(q['command'])}`.",
        "",
    ]


def agent_node_section(k, load):
    """Section 7: nodeprof agent on the simulated node, perf record after it."""
    a, n, mt, rc, p = k["agent"], k["node"], k["metrics"], k["receiver"], k["perf"]
    run_cpu = 100 * a["run_cpu_s"] / a["run_s"]
    perf_cpu = 100 * (p["user_s"] + p["sys_s"]) / p["wall_s"] if p else 0
    mib = lambda kib_: kib_ / 1024.0
    g = lambda key: int(mt.get(key, 0))
    to_pod, to_container, to_node = (g('nodeprof_samples_attributed_total{to="%s"}' % t)
                                     for t in ("pod", "container", "node"))

    def probe_row(x):
        return (f"| {x['name']} | {x['created_after_ready_s']:.1f} s | {x['first_sample_after_s']:.2f} s "
                f"| **{x['exported_after_s']:.2f} s** | {x['process_exported_after_s']:.2f} s "
                f"| {x['process_windows_without_pod']} |")

    rows = [
        f"| nodeprof agent ({k['frequency']} Hz, export every {k['export_interval_s']} s, pods watched) | {a['run_s']:.1f} s | "
        f"{a['run_user_s']:.2f} s | {a['run_sys_s']:.2f} s | **{run_cpu:.2f}%** | {mib(a['peak_rss_kib']):.1f} MiB | "
        f"{rc['requests']} OTLP requests |",
    ]
    if p:
        rows.append(
            f"| perf record -F {k['frequency']} -a -g | {p['wall_s']:.1f} s | {p['user_s']:.2f} s | {p['sys_s']:.2f} s | "
            f"**{perf_cpu:.2f}%** | {mib(p['max_rss_kib']):.1f} MiB | {p['bytes'] / 1024:.0f} KiB perf.data |")
    probes = k["probes"]
    return [
        "## 7. The agent on the simulated node",
        "",
        f"`hack/fake-node/fake-node`: {n['pods_at_start']} pods of the section 6 kind (same generator) in kubelet-shaped cgroup v2",
        f"directories (systemd driver, containerd), {n['container_processes_at_start']} container processes: `sleep infinity`, except {n['burners']} that",
        f"burn CPU (`/bin/sh -c 'while :; do :; done'`), so both CPUs are busy; creating them took {n['creation_s']:.0f} s.",
        f"`nodeprof agent` watches the node's pods through the fake API server and exports to `hack/otlp/receiver.py`",
        f"over HTTP. It ran {a['run_s']:.0f} s after it was ready; {n['probes']} more pods (burning CPU) were created during the",
        f"run (at different points of an export window), so the node had {n['pods_at_end']} at the end.",
        "CPU is utime + stime over wall time from `/proc/PID/stat`, from ready to the end of the run; peak",
        "RSS is VmHWM. perf record ran right after on the same node (same pods and load, agent stopped); its",
        "CPU and peak RSS come from wait4.",
        load_note(load),
        "",
        "| tool | wall | user | sys | CPU (% of one core) | peak RSS | output |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Start-up: ready (`/readyz`: sampling and the first pod list) {a['ready_s']:.2f} s after exec, having used "
        f"{a['startup_cpu_s']:.2f} s of CPU.",
        f"Shutdown: SIGTERM to exit {a['shutdown_s']:.2f} s (exit code {a['exit_code']}), the last window exported.",
        f"Over its whole life ({a['total_wall_s']:.0f} s) the agent used {a['total_user_s'] + a['total_sys_s']:.2f} s of CPU "
        f"({a['total_cpu_percent']:.2f}% of one core).",
        "",
        f"From `/metrics` at the end of the run (before the open window's export at shutdown): samples recorded",
        f"{g('nodeprof_samples_recorded_total'):,}, exported (accepted by the receiver) {g('nodeprof_export_samples_total'):,}; "
        f"attributed to pods {to_pod:,}, "
        f"to a container only {to_container:,}, to the node {to_node:,};",
        f"pods cached {g('nodeprof_pod_cache_pods')} ({g('nodeprof_pod_cache_containers')} containers), "
        f"watch restarts {g('nodeprof_kubernetes_watch_restarts_total')}, API requests {g('nodeprof_kubernetes_requests_total')}, "
        f"Job GETs {g('nodeprof_pod_cache_job_lookups_total')}, samples dropped {g('nodeprof_samples_dropped_total')},",
        f"windows {g('nodeprof_windows_total')} (dropped {g('nodeprof_windows_dropped_total')}). "
        f"The receiver, after shutdown: {rc['requests']} requests, {rc['ok']} ok, {rc['samples']:,} samples,",
        f"{rc['pods_seen']} distinct pods on resources, {rc['violations']} conformance violations.",
        "",
        f"End to end, per pod created during the run: from sending `POST /node/pods` to the first sample of its",
        f"process, and to the receiver getting the first export whose resource carries the pod's uid; beside it,",
        "the first export of the process at all, and how many exported windows had the process without its pod.",
        f"Exports happen when a {k['export_interval_s']} s window closes, so this is bounded by the interval (plus the",
        "attribution grace when the pod is not known yet); where in the window a pod starts decides it.",
        "",
        "| pod | created after ready | first sample | exported with its pod | process first exported | windows without its pod |",
        "|---|---|---|---|---|---|",
        *[probe_row(x) for x in probes],
        "",
        f"Commands: `{show(k['command'])}` (started by `{show(k['bench_command'])}`); "
        + (f"`{show(p['command'])}`." if p else "no perf peer."),
        "",
    ]


# MARK: sections 8 to 10, trace correlation (OTEP 4947 thread context, OTEP 4719 process context)

WRITER_DIR = os.path.join(ROOT, "Sources", "CContextPublisher")
WRITER_C = os.path.join(WRITER_DIR, "otel_context.c")
WRITER_INCLUDE = os.path.join(WRITER_DIR, "include")
TRACE = ({"bpf_seconds": 6, "frequency": 999, "writer_iterations": 1_000_000, "writer_repeats": 3,
          "publishers": 500, "read_seconds": 3, "read_rounds": 3}
         if QUICK else
         {"bpf_seconds": 20, "frequency": 999, "writer_iterations": 10_000_000, "writer_repeats": 7,
          "publishers": 500, "read_seconds": 15, "read_rounds": 3})
# The burner's span record attributes (key index = position): 60 bytes of entries.
THREAD_ATTRIBUTES = ["GET", "/api/v1/orders/{id}", "tenant-4711", "eu-west-1b", "premium"]
THREAD_RECORD_HEADER = 28

# Section 1's burner, with a span record attached to its thread while it burns.
CONTEXT_BURNER = r"""
#include <stdint.h>
#include <string.h>
#include "otel_context.h"
static volatile uint64_t sink;
__attribute__((noinline)) static void leaf(int n) { for (int i = 0; i < n; i++) sink = sink * 31 + i; }
__attribute__((noinline)) static void mid(int depth) { if (depth == 0) leaf(100000); else mid(depth - 1); }
static const char *const values[] = {VALUES};
int main(void)
{
	static otel_thread_record record;
	static const uint8_t trace_id[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
					     0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
	static const uint8_t span_id[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
	otel_thread_record_init(&record, trace_id, span_id, 1);
	for (unsigned i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		if (!otel_thread_record_add_attribute(&record, (uint8_t)i, values[i], strlen(values[i])))
			return 1;
	otel_thread_ctx_set(&record);
	for (;;) mid(20);
}
""".replace("VALUES", ", ".join(json.dumps(v) for v in THREAD_ATTRIBUTES))

# publisher N: forks N children; each publishes its own process context (a replica of a checkout
# service) and sleeps. Prints "PID PAYLOAD_BYTES RC" per child, then "ready N".
PUBLISHER = r"""
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include "otel_context.h"
int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	int ready[2];
	if (pipe(ready) != 0) { perror("pipe"); return 1; }
	pid_t parent = getpid();
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0) { perror("fork"); return 1; }
		if (pid > 0) continue;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent) _exit(0);
		close(ready[0]);
		char instance[64], host[64];
		snprintf(instance, sizeof instance, "checkout-7d9f8b6c5-%05d", i);
		if (gethostname(host, sizeof host) != 0) strcpy(host, "localhost");
		host[sizeof host - 1] = 0;
		const otel_kv resource[] = {
			{"service.name", "checkout"}, {"service.version", "1.4.2"}, {"service.namespace", "shop"},
			{"service.instance.id", instance}, {"deployment.environment.name", "prod"},
			{"host.name", host}, {"telemetry.sdk.name", "opentelemetry"},
			{"telemetry.sdk.language", "cpp"}, {"telemetry.sdk.version", "1.21.0"},
		};
		const char *const keys[] = {"http.route", "http.request.method", "user.id"};
		int rc = otel_process_context_publish(resource, sizeof resource / sizeof resource[0], NULL, 0, keys, 3);
		const otel_process_context_header *header = otel_process_context_mapping();
		char line[64];
		int length = snprintf(line, sizeof line, "%d %u %d\n", (int)getpid(), header ? header->payload_size : 0, rc);
		if (write(ready[1], line, (size_t)length) != length) _exit(1);
		close(ready[1]);
		for (;;) pause();
	}
	close(ready[1]);
	FILE *lines = fdopen(ready[0], "r");
	char line[64];
	int got = 0;
	while (got < n && lines && fgets(line, sizeof line, lines)) {
		fputs(line, stdout);
		got++;
	}
	printf("ready %d\n", got);
	fflush(stdout);
	for (;;) pause();
}
"""


def run_trace_sections(results, work):
    """Runs the selected sections of 8 to 10 into results."""
    if 8 in SELECTED:
        results["thread_context_bpf"] = thread_context_bpf(work)
    if 9 in SELECTED:
        results["load_before_writer"] = os.getloadavg()
        cmd = [BENCH, "writer-cost", "--iterations", str(TRACE["writer_iterations"]),
               "--repeats", str(TRACE["writer_repeats"])]
        results["writer"] = json.loads(run_measured(cmd)[4])
        results["writer"]["command"] = " ".join(cmd)
    if 10 in SELECTED:
        results["context_read"] = context_read(work)
    if 11 in SELECTED:
        results["pipeline"] = pipeline(work)


def compile_c(argv):
    subprocess.run(argv, check=True)
    return " ".join(argv)


def thread_context_bpf(work):
    """Section 8: the BPF program with and without the burners' thread context located, for
    three builds of the writer."""
    load = os.getloadavg()
    source = os.path.join(work, "context-burner.c")
    with open(source, "w") as f:
        f.write(CONTEXT_BURNER)
    burner = ["cc", "-O1", "-fno-omit-frame-pointer", f"-I{WRITER_INCLUDE}"]
    builds = []
    exe = os.path.join(work, "context-burner")
    builds.append(("executable", "writer compiled into the executable, `-mtls-dialect=gnu2`, symbol exported", exe,
                   [burner + ["-mtls-dialect=gnu2", "-o", exe, source, WRITER_C,
                              "-Wl,--export-dynamic-symbol=otel_thread_ctx_v1"]]))
    for key, dialect, name in (("tlsdesc", "gnu2", "shared library, `-mtls-dialect=gnu2` (TLSDESC)"),
                               ("general_dynamic", "gnu", "shared library, `-mtls-dialect=gnu` (general dynamic)")):
        library = f"otel_context_{key}"
        exe = os.path.join(work, f"context-burner-{key}")
        builds.append((key, name, exe, [
            ["cc", "-O2", "-fPIC", "-shared", f"-mtls-dialect={dialect}", f"-I{WRITER_INCLUDE}",
             "-o", os.path.join(work, f"lib{library}.so"), WRITER_C],
            burner + ["-o", exe, source, f"-L{work}", f"-l{library}", f"-Wl,-rpath,{work}"],
        ]))
    runs = []
    for key, name, exe, commands in builds:
        compiled = [compile_c(c) for c in commands]
        burners = [subprocess.Popen([exe]) for _ in range(os.cpu_count() or 2)]
        try:
            time.sleep(1)
            base = [BENCH, "bpf-cost", "--seconds", str(TRACE["bpf_seconds"]), "--frequency", str(TRACE["frequency"]),
                    "--thread-context", "alternate"]
            cmd = base + [a for p in burners for a in ("--pid", str(p.pid))]
            run = json.loads(run_measured(cmd)[4])
        finally:
            stop(burners)
        run.update(key=key, name=name, compile=compiled,
                   command=" ".join(base) + "".join(f" --pid P{i + 1}" for i in range(len(burners))))
        runs.append(run)
    return {"runs": runs, "burners": os.cpu_count() or 2, "load": load,
            "attribute_bytes": sum(2 + len(v.encode()) for v in THREAD_ATTRIBUTES)}


def context_read(work):
    """Section 10: 500 publishing processes, the reader's lookups over them."""
    load = os.getloadavg()
    source = os.path.join(work, "publisher.c")
    with open(source, "w") as f:
        f.write(PUBLISHER)
    exe = os.path.join(work, "publisher")
    compiled = compile_c(["cc", "-O2", "-mtls-dialect=gnu2", f"-I{WRITER_INCLUDE}", "-o", exe, source, WRITER_C])
    count = TRACE["publishers"]
    # Its own process group: end_group ends the publisher and its children on every exit path
    # (and each child dies with its parent: PR_SET_PDEATHSIG).
    proc = subprocess.Popen([exe, str(count)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pids, payloads = [], []
        for line in proc.stdout:
            if line.startswith("ready"):
                break
            pid, size, rc = line.split()
            if rc != "0":
                sys.exit(f"bench: publisher {pid}: otel_process_context_publish returned {rc}")
            pids.append(pid)
            payloads.append(int(size))
        if len(pids) != count:
            sys.exit(f"bench: {len(pids)} of {count} publishers started")
        pids_file = os.path.join(work, "publishers.txt")
        with open(pids_file, "w") as f:
            f.write("\n".join(pids) + "\n")
        with open(f"/proc/{pids[0]}/maps") as f:
            maps_lines = len(f.read().splitlines())
        cmd = [BENCH, "context-read", "--pids-file", pids_file, "--seconds", str(TRACE["read_seconds"]),
               "--rounds", str(TRACE["read_rounds"])]
        result = json.loads(run_measured(cmd)[4])
    finally:
        end_group(proc)
    result.update(command=" ".join(cmd), compile=compiled, publisher_command=f"{exe} {count}", load=load,
                  payload_bytes={"min": min(payloads), "max": max(payloads)}, maps_lines=maps_lines)
    return result


# A section measured without sections 1 to 7 says so in this line; the header lists such sections.
SEPARATE_MARK = "Run on its own:"
SEPARATE_HEADER = "Not from that run:"


def split_sections(lines):
    """(header, {number: lines}) of BENCHMARKS.md lines: a section starts at `## N. `."""
    header, sections, current = [], {}, None
    for line in lines:
        match = re.match(r"## (\d+)\. ", line)
        if match:
            current = int(match.group(1))
            sections[current] = []
        (header if current is None else sections[current]).append(line)
    return header, sections


def write_benchmarks(lines, header_from_this_run):
    """Writes the sections in lines into BENCHMARKS.md, keeping the sections of the file this
    run did not measure (and its header, unless lines bring one)."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    old_header, old = ([], {})
    if os.path.exists(path):
        with open(path) as f:
            old_header, old = split_sections(f.read().split("\n"))
    new_header, new = split_sections(lines)
    header = new_header if header_from_this_run else old_header
    merged = dict(old)
    merged.update(new)
    separate = sorted(n for n, body in merged.items()
                      if any(l.startswith(SEPARATE_MARK) for l in body) or (header_from_this_run and n not in new))
    header = [l for l in header if not l.startswith(SEPARATE_HEADER)]
    if separate:
        names = ", ".join(str(n) for n in separate[:-1]) + (" and " if len(separate) > 1 else "") + str(separate[-1])
        at = next((i + 1 for i, l in enumerate(header) if l.startswith("Every figure below")), min(3, len(header)))
        header.insert(at, f"{SEPARATE_HEADER} section{'s' if len(separate) > 1 else ''} {names}, measured "
                          "in a separate run of `hack/bench --only` (the section says when).")
    with open(path, "w") as f:
        f.write("\n".join(header + [l for n in sorted(merged) for l in merged[n]]))


def trace_markdown(r):
    """Sections 8 to 10, those this run measured."""
    m = r["machine"]
    own = []
    if not SELECTED & CORE_SECTIONS:
        only = sys.argv[sys.argv.index("--only") + 1]
        own = [f"{SEPARATE_MARK} `hack/bench --only {only}{' --quick' if QUICK else ''}` on {m['date']} "
               f"({m['cpus']} CPUs, {m['cpu']}, kernel {m['kernel']})."
               + (" **Quick run: shortened durations, not for comparison.**" if QUICK else ""), ""]
    lines = []
    if "thread_context_bpf" in r:
        lines += thread_context_bpf_section(r["thread_context_bpf"], own)
    if "writer" in r:
        lines += writer_section(r["writer"], r["load_before_writer"], own)
    if "context_read" in r:
        lines += context_read_section(r["context_read"], own)
    if "pipeline" in r:
        lines += pipeline_section(r["pipeline"], own)
    return lines


def us(ns):
    return f"{ns / 1000:.2f} us"


def solve(matrix, vector):
    """Gaussian elimination with partial pivoting; None when the system is singular."""
    n = len(vector)
    m = [list(map(float, row)) + [float(v)] for row, v in zip(matrix, vector)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-9 * max(1.0, max(abs(v) for row in m for v in row[:n])):
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [a - f * b for a, b in zip(m[r], m[col])]
    return [m[i][n] / m[i][i] for i in range(n)]


def fit_extra_cost(windows):
    """Extra run time per burner sample when located, from bpf-cost's window totals: least
    squares of time = a * other runs + b * burner samples + x * burner samples when located
    (other runs end at the pid filter). Without other runs (under 1%), a is left out."""
    rows = [(runs - sent, sent, sent * located, ns) for located, ns, runs, sent in windows]
    other = sum(r[0] for r in rows) / max(1, sum(r[0] + r[1] for r in rows))
    columns = [0, 1, 2] if other >= 0.01 else [1, 2]
    matrix = [[sum(r[i] * r[j] for r in rows) for j in columns] for i in columns]
    vector = [sum(r[i] * r[3] for r in rows) for i in columns]
    solution = solve(matrix, vector)
    return solution[-1] if solution else float("nan")


def thread_context_bpf_section(t, own):
    """Section 8: extra BPF cost per sample of reading the thread context."""
    def share(side):
        return side["submitted"] / side["runs"] if side["runs"] else 0

    def extra_per_sample(x):
        return fit_extra_cost(x["window_totals"])

    def row(x):
        n, l = x["not_located"], x["located"]
        access = x["locations"][0]
        where = (f"thread pointer {access['thread_pointer_offset']:+d}" if "thread_pointer_offset" in access
                 else f"DTV module {access['dtv_module']}, +{access['dtv_offset']}")
        return (f"| {x['name']} | {access['model']}: {where} | {n['runs']:,} / {l['runs']:,} | {us(n['median_ns'])} "
                f"| {us(l['median_ns'])} | **{us(l['median_ns'] - n['median_ns'])}** | {us(extra_per_sample(x))} "
                f"| {100 * share(n):.0f}% / {100 * share(l):.0f}% | {l['thread_contexts_found']:,} of {l['submitted']:,} "
                f"(not located: {n['thread_contexts_found']}) | {l['thread_contexts_unreadable'] + n['thread_contexts_unreadable']} |")

    runs = {x["key"]: x for x in t["runs"]}
    first = t["runs"][0]
    found = sum(x["located"]["thread_contexts_found"] for x in t["runs"])
    sent = sum(x["located"]["submitted"] for x in t["runs"])
    unlocated_found = sum(x["not_located"]["thread_contexts_found"] for x in t["runs"])
    return [
        "## 8. Thread context: extra BPF cost per sample",
        "",
        *own,
        "What reading a thread's span record (OTEP 4947) adds to the sampler's BPF program per sample.",
        f"Load: {t['burners']} burners (section 1's: a 22-deep frame-pointer stack, one per CPU; `CONTEXT_BURNER` in",
        "hack/bench.py) linked with the writer (`Sources/CContextPublisher/otel_context.c`), each keeping a caller-owned record attached",
        f"(`otel_thread_ctx_set`) while it burns: ids, flags and {len(THREAD_ATTRIBUTES)} attributes of {t['attribute_bytes']} bytes, so "
        f"{THREAD_RECORD_HEADER + t['attribute_bytes']} bytes are read per sample.",
        "`nodeprof-bench bpf-cost --thread-context alternate` locates `otel_thread_ctx_v1` in each burner",
        "(`ThreadContextLocation.locate`, the agent's code) and turns the program's entry for them",
        "(`Sampler.setThreadContextAccess`) on and off every 500 ms window. Not located: the program's map",
        "lookup misses and the sample goes without a record. Located: the thread pointer, the TLS variable",
        "(through the DTV for general dynamic), the record's 28-byte header, its attributes, and a ring-buffer",
        "record larger by as much. Costs as in section 1 (median of the window means of `run_time_ns / run_cnt`),",
        f"each state over its own windows, at {first['frequency']} Hz for {first['seconds']} s per build. Samples of other processes",
        "end at the `--pid` filter in both states but count as (cheap) runs, and their share moves between",
        "windows (\"burner share\": the share of runs that were burner samples): the column \"extra per burner",
        "sample\" is the least-squares x over all windows of run time = a · other runs + (b + x · located) ·",
        "burner samples.",
        load_note(t["load"]),
        "",
        "| writer build | access, as located | runs not located / located | median, not located | median, located "
        "| extra (medians) | extra per burner sample (least squares) | burner share | records read (`threadContextsFound`) | unreadable |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[row(x) for x in t["runs"]],
        "",
        "Target: at most 0.3 us extra per sample (per burner sample, least squares): "
        + "; ".join(f"{met(extra_per_sample(x) <= 300)} for {x['name']} ({us(extra_per_sample(x))})" for x in t["runs"])
        + ". The executable and TLSDESC builds make the same reads (thread pointer - 8), so the difference"
        " between them is run-to-run noise.",
        f"Records read while located: {found:,} of the {sent:,} samples sent ({100 * found / sent if sent else 0:.1f}%); "
        f"while not located: {unlocated_found} (a sample",
        "taken as a window closes can be counted in the next window). Located, the program loads the thread",
        "pointer from the task (a plain load where the kernel has `bpf_get_current_task_btf`), then makes two reads",
        "of user memory (the TLS variable, then the record's header with its first 100 attribute bytes at once; a",
        "third for longer attributes); general dynamic makes two more (the DTV pointer and its entry)"
        + (f", which cost {us(extra_per_sample(runs['general_dynamic']) - extra_per_sample(runs['tlsdesc']))} here."
           if "general_dynamic" in runs and "tlsdesc" in runs else "."),
        "",
        "Commands: " + "; ".join(f"`{show(c)}`" for x in t["runs"] for c in x["compile"]) + "; then for each build, "
        f"with its burners running: `{show(first['command'])}` (P1, P2: the burners' pids).",
        "",
    ]


def writer_section(w, load, own):
    """Section 9: attach + detach of a span record on the writer's hot path."""
    cases = {c["key"]: c for c in w["cases"]}
    empty = cases["empty"]["median_ns"]
    writer_keys = ["c_set_clear", "c_store_clear", "c_store_clear_attr", "c_build_store_clear_attr",
                   "swift_set_clear", "swift_set_clear_attr", "swift_with_span_attr"]

    def row(key, bold=True):
        c = cases[key]
        median = f"**{c['median_ns']:.1f} ns**" if bold else f"{c['median_ns']:.1f} ns"
        return (f"| {c['name']} | {median} | {c['min_ns']:.1f} ... {c['max_ns']:.1f} ns "
                f"| {c['median_ns'] - empty:.1f} ns | {c['wall_median_ns']:.1f} ns |")

    short = {"c_set_clear": "C `set` + `clear`", "c_store_clear": "C `store` + `clear`",
             "c_store_clear_attr": "C `store` + `clear` with an attribute",
             "c_build_store_clear_attr": "C with the record built per span",
             "swift_set_clear": "Swift `set` + `clear`", "swift_set_clear_attr": "Swift `set` + `clear` with an attribute",
             "swift_with_span_attr": "Swift `withSpan` with an attribute"}
    over = [f"{short[k]} ({cases[k]['median_ns']:.1f} ns)" for k in writer_keys if cases[k]["median_ns"] > 20]
    checks = w["checks"]
    return [
        "## 9. Thread context: attach + detach on the writer's hot path",
        "",
        *own,
        "What a traced application pays per span to publish it: attach a record to the calling thread, then",
        f"detach it, {w['iterations']:,} times in a loop; the median of {w['repeats']} repetitions, the cases taking turns in each",
        "(`nodeprof-bench writer-cost`, a release build). The C writer is compiled into that executable as",
        "SwiftPM builds it for an application (`-mtls-dialect=gnu2`; the linker relaxes the TLS access to",
        f"local exec). Records: ids and flags, with no attribute or one {w['attribute_bytes']}-byte attribute (`/users/{{id}}`);",
        "the Swift rows attach a `ThreadSpan` built before the loop. Peer: a `pthread_key_t` slot used as a",
        "TLS-key implementation would (get the previous value, set the record, set the previous value back).",
        "Baseline: the same loop calling an empty non-inlined function. Times are the thread's CPU time",
        "(`CLOCK_THREAD_CPUTIME_ID`) per iteration, so time spent waiting for a CPU is left out; the wall",
        "time is beside them.",
        load_note(load),
        "",
        "| per iteration | median (CPU time) | repetitions (min ... max) | minus the empty loop | median (wall) |",
        "|---|---|---|---|---|",
        *[row(k) for k in writer_keys],
        row("pthread_key", bold=False),
        row("empty", bold=False),
        "",
        "Target: at most 20 ns per attach + detach: "
        + ("met by every row." if not over else
           f"{met(False)} by {'; '.join(over)}; met by the other rows."),
        "A `ThreadSpan` encodes its attribute entries when they are set, so `ThreadContext.set` copies the ids",
        "and those bytes into the thread's free buffer (`otel_thread_ctx_store_span`); `withSpan` also reads what",
        "was attached before and restores it.",
        "Checks, untimed, in the same process: "
        + ("every way of attaching attached the record and every detach left none."
           if all(checks.values()) else "**failed: " + ", ".join(k for k, v in checks.items() if not v) + "**."),
        "",
        f"Command: `{show(w['command'])}`.",
        "",
    ]


def context_read_section(c, own):
    """Section 10: reader throughput over 500 publishing processes."""
    s, f, p = c["steady_state"], c["first_sight"], c["maps_read"]
    rss = c["rss_kib"]
    wu = c["warm_up"]

    def row(name, x, reads):
        errors = x.get("errors", sum(x["thrown"].values()))
        return (f"| {name} | {x['operations']:,} | **{x['per_second']:,.0f}** | {x['us_per_operation']:.2f} us "
                f"| {x['cpu_us_per_operation']:.2f} us | {reads} | {errors} |")

    st, fs = s["statistics"], f["statistics"]
    payload = c["payload_bytes"]
    payload_text = (f"{payload['min']} bytes" if payload["min"] == payload["max"]
                    else f"{payload['min']} to {payload['max']} bytes")
    return [
        f"## 10. Process context: reader throughput over {c['processes']} publishing processes",
        "",
        *own,
        f"A C program (`PUBLISHER` in hack/bench.py) forks {c['processes']} children; each publishes a process context with the writer",
        "(`otel_process_context_publish`: resource `service.name`, `service.version`, `service.namespace`,",
        "`service.instance.id`, `deployment.environment.name`, `host.name`, `telemetry.sdk.{name,language,version}`;",
        f"a thread attribute key map of 3 keys; a payload of {payload_text}) and sleeps; each child's",
        f"`/proc/PID/maps` has {c['maps_lines']} lines. `nodeprof-bench context-read` looks the contexts up with one",
        "`ProcessContextReader` (the agent's), round-robin over the pids, "
        f"{c['seconds_per_regime']:g} s per regime in {c['rounds']} rounds (the regimes take",
        "turns):",
        "",
        "- steady state: every pid cached; a lookup reads the 32-byte header (`process_vm_readv`), finds the",
        "  timestamp unchanged and answers from the cache;",
        "- first sight: `forget(pid:)` before each lookup: read `/proc/PID/maps` and find `OTEL_CTX`, read the",
        "  header and the payload, re-read the timestamp, decode;",
        "- peer: read `/proc/PID/maps` whole (`FileContents.read`, where the maps scan starts), what any",
        "  per-process scan pays.",
        "",
        "Rates are per wall-clock second of one thread; beside them, that thread's CPU time (user + system)",
        "per lookup, which leaves out time spent waiting for a CPU.",
        load_note(c["load"]),
        "",
        "| regime | lookups | per second | each (wall) | each (CPU time) | reads (reader statistics) | errors |",
        "|---|---|---|---|---|---|---|",
        row("steady state (cached)", s, f"{st['header_reads']:,} headers, {st['payload_reads']} payloads, "
            f"{st['cache_hits']:,} cache hits"),
        row("first sight (`forget` first)", f, f"{fs['header_reads']:,} headers, {fs['payload_reads']:,} payloads, "
            f"{fs['reads']:,} decoded"),
        row("peer: `/proc/PID/maps` read", p, f"{p['bytes_mean']:,.0f} bytes per read"),
        "",
        f"Errors are the reader's failure counters (torn, not published, bad header, unreadable memory, decode,",
        f"process gone) plus lookups that threw; lookups without a context: {s['without_result'] + f['without_result']}. "
        f"Before the timing every pid was",
        f"looked up once: {wu['contexts_with_service_name']} of {c['processes']} contexts carried `service.name`, "
        f"{wu['resource_attributes_mean']:.0f} resource attributes and a key map of",
        f"{wu['key_map_entries_mean']:.0f} on average. RSS of the bench process: {rss['before'] / 1024:.1f} MiB before the first lookup, "
        f"{rss['after_warm_up'] / 1024:.1f} MiB",
        f"with the {c['cached_processes']} contexts cached, {rss['end'] / 1024:.1f} MiB at the end (peak {rss['peak'] / 1024:.1f} MiB).",
        "",
        f"In CPU time a cached lookup costs {s['cpu_us_per_operation'] / p['cpu_us_per_operation']:.2f} of a maps read, "
        f"a lookup at first sight {f['cpu_us_per_operation'] / p['cpu_us_per_operation']:.1f} maps reads;",
        f"{c['processes']} cached lookups take {c['processes'] * s['cpu_us_per_operation'] / 1000:.2f} ms of CPU, "
        f"{c['processes']} at first sight {c['processes'] * f['cpu_us_per_operation'] / 1000:.1f} ms.",
        "Maps of real applications are longer (shared libraries, heaps, thread stacks); the maps read and the",
        "first-sight lookup grow with them, the cached lookup does not.",
        "",
        f"Commands: `{show(c['compile'])}`; `{show(c['publisher_command'])}` (its own process group, ended",
        f"afterwards); `{show(c['command'])}`.",
        "",
    ]


# 11. The pipeline against the previous one (the process table, index-only encoders): the same
# commands run with this tree's release build and with BASELINE_REV's, built by build_baseline.
BASELINE_REV = os.environ.get("BENCH_BASELINE_REV", "675ab35")
BASELINE_DIR = os.path.join(ROOT, ".build-baseline")
PIPELINE = {"spawned": 20, "record_seconds": 8, "agent_seconds": 10} if QUICK else \
    {"spawned": 40, "record_seconds": 10, "agent_seconds": 30}


def build_baseline():
    """Release nodeprof and nodeprof-bench of BASELINE_REV (a detached worktree), once."""
    src = os.path.join(BASELINE_DIR, "src")
    if not os.path.isdir(src):
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", src, BASELINE_REV], check=True,
                       stdout=subprocess.DEVNULL)
    else:
        subprocess.run(["git", "-C", src, "checkout", "--detach", BASELINE_REV], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scratch = os.path.join(BASELINE_DIR, "build")
    for product in ("nodeprof", "nodeprof-bench"):
        subprocess.run(["swift", "build", "-c", "release", "--scratch-path", scratch, "--product", product],
                       cwd=src, check=True, stdout=subprocess.DEVNULL)
    revision = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                              text=True, check=True).stdout.strip()
    return os.path.join(scratch, "release"), revision


PROC_FILE = re.compile(r'(?:openat\(AT_FDCWD, |readlinkat\(AT_FDCWD, |readlink\()"/proc/(\d+)/([^/"]+)')


def proc_reads(nodeprof, work, label, spawner):
    """Files of /proc/PID read per new process while `nodeprof record` samples the machine and
    `spawner` starts processes (half publish a context announcing thread context)."""
    log = os.path.join(work, f"strace-{label}.log")
    cmd = ["strace", "-f", "-qq", "-e", "trace=openat,readlink,readlinkat", "-o", log, nodeprof, "record",
           "--duration", f"{PIPELINE['record_seconds']}s", "--frequency", "99", "--top", "0",
           "--output", os.path.join(work, f"{label}.pb.gz")]
    recording = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)  # the sampler is loaded
    spawned = subprocess.run([spawner, str(PIPELINE["spawned"])], stdout=subprocess.PIPE, text=True, check=True)
    recording.wait()
    kinds = {}
    for line in spawned.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            kinds[parts[0]] = parts[1]
    counts = {kind: {} for kind in ("publisher", "plain")}
    seen = {kind: set() for kind in counts}
    with open(log) as f:
        for line in f:
            match = PROC_FILE.search(line)
            if not match or match.group(1) not in kinds:
                continue
            pid, name = match.group(1), match.group(2)
            kind = kinds[pid]
            seen[kind].add(pid)
            counts[kind][name] = counts[kind].get(name, 0) + 1
    result = {}
    for kind in counts:
        n = len(seen[kind])
        result[kind] = {"processes": n, "started": sum(1 for k in kinds.values() if k == kind),
                        "per_process": {name: count / n for name, count in sorted(counts[kind].items())} if n else {}}
    result["command"] = " ".join(cmd[:7] + ["..."] + cmd[7:])
    return result


def encode_cost(bench, work, label):
    """OTLP and pprof encode times of the synthetic node, and heap allocations per encode of both."""
    cmd = [bench, "otlp-encode", "--source", "synthetic", "--seconds", "60", "--frequency", "99",
           "--processes", "200", "--cpus", "16", "--repeats", str(ENCODE_REPEATS)]
    out = json.loads(run_measured(cmd)[4])
    shim = os.path.join(work, "alloc-count.so")
    if not os.path.exists(shim):
        compile_c(["cc", "-shared", "-fPIC", "-O2", "-o", shim,
                   os.path.join(ROOT, "hack", "bench-support", "alloc-count.c")])
    allocations = []
    stages = {}
    for repeats in (1, 3):
        counted = os.path.join(work, f"allocations-{label}-{repeats}")
        env = dict(os.environ, LD_PRELOAD=shim, ALLOC_COUNT_FILE=counted)
        run = subprocess.run(cmd[:-1] + [str(repeats)], env=env, stdout=subprocess.PIPE, text=True, check=True)
        with open(counted) as f:
            allocations.append(int(f.read()))
        # Builds that look the counter up report each encoder's allocations themselves.
        stages = json.loads(run.stdout).get("allocations", stages)
    per_repeat = (allocations[1] - allocations[0]) / 2
    return {"command": " ".join(cmd), "samples": out["samples"], "otlp_encode_ms": out["otlp"]["encode_ms"],
            "pprof_serialize_ms": out["pprof"]["serialize_ms"], "otlp_raw_bytes": out["otlp"]["raw_bytes"],
            "otlp_gzip_bytes": out["otlp"]["gzip_bytes"], "requests": out["otlp"]["requests"],
            "allocations_per_repeat": per_repeat, "allocations_per_sample": per_repeat / out["samples"],
            "otlp_allocations": stages.get("otlp_encode"), "pprof_allocations": stages.get("pprof_serialize")}


def cpu_at_19hz(argv):
    """CPU (% of one core) and peak RSS of argv on the loaded machine."""
    wall, user, sys_, _, _ = run_measured(argv)
    return {"command": " ".join(argv), "wall": wall, "user": user, "sys": sys_,
            "cpu_pct": 100 * (user + sys_) / wall, "rss_kib": measure_rss(argv)}


def pipeline(work):
    """Section 11."""
    binaries, revision = build_baseline()
    before = {"nodeprof": os.path.join(binaries, "nodeprof"), "bench": os.path.join(binaries, "nodeprof-bench")}
    source = os.path.join(ROOT, "hack", "bench-support", "spawn-processes.c")
    spawner = os.path.join(work, "spawn-processes")
    compiled = compile_c(["cc", "-O1", "-mtls-dialect=gnu2", f"-I{WRITER_INCLUDE}", "-o", spawner, source, WRITER_C])
    r = {"baseline": revision, "load": os.getloadavg(), "spawner": compiled}
    r["reads_before"] = proc_reads(before["nodeprof"], work, "before", spawner)
    r["reads_after"] = proc_reads(NODEPROF, work, "after", spawner)
    r["encode_before"] = encode_cost(before["bench"], work, "before")
    r["encode_after"] = encode_cost(BENCH, work, "after")
    seconds = PIPELINE["agent_seconds"]
    burners = start_burners(work, os.cpu_count() or 2)
    try:
        time.sleep(1)
        record = ["record", "--duration", f"{seconds}s", "--frequency", "19", "--top", "0", "--output"]
        r["cpu_before"] = cpu_at_19hz([before["nodeprof"]] + record + [os.path.join(work, "b19.pb.gz")])
        r["cpu_after"] = cpu_at_19hz([NODEPROF] + record + [os.path.join(work, "a19.pb.gz")])
        r["cpu_perf"] = cpu_at_19hz(["perf", "record", "-F", "19", "-a", "-g", "-q", "-o",
                                     os.path.join(work, "perf19.data"), "--", "sleep", str(seconds)])
        r["cpu_bpftrace"] = cpu_at_19hz(
            ["bpftrace", "-q", "-e",
             f"profile:hz:19 {{ @[kstack, ustack, comm] = count(); }} interval:s:{seconds} {{ exit(); }}"])
    finally:
        stop(burners)
    return r


def pipeline_section(p, own):
    b, a = p["encode_before"], p["encode_after"]
    lines = ["## 11. The pipeline against the previous one: /proc reads, encoding, CPU at 19 Hz", ""] + own + [
        f"The same commands, in one run, with this tree's release build (**after**) and with the release build "
        f"of `{p['baseline']}` (**before**: five places each reading /proc per process, encoders that re-key "
        "the profile and hash protobuf messages), built by `hack/bench` in `.build-baseline/`.",
        "",
        f"**/proc reads per new process.** `nodeprof record` of the whole machine at 99 Hz under "
        f"`strace -f -e trace=openat,readlink,readlinkat` while `hack/bench-support/spawn-processes.c` starts "
        f"{PIPELINE['spawned']} processes 100 ms apart (each burns 400 ms; every other one first publishes a "
        "process context announcing thread context with the writer library). Files of `/proc/PID/` opened "
        "or read as links, per sampled new process:",
        "",
        "| build | processes | maps | exe | stat | comm | cgroup | other |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, reads in (("before", p["reads_before"]), ("after", p["reads_after"])):
        for kind in ("publisher", "plain"):
            x = reads[kind]
            per = x["per_process"]
            other = sum(v for k, v in per.items() if k not in ("maps", "exe", "stat", "comm", "cgroup"))
            lines.append(f"| {label} | {x['processes']} of {x['started']} {kind}s | {per.get('maps', 0):.2f} | "
                         f"{per.get('exe', 0):.2f} | {per.get('stat', 0):.2f} | {per.get('comm', 0):.2f} | "
                         f"{per.get('cgroup', 0):.2f} | {other:.2f} |")
    after_pub = p["reads_after"]["publisher"]["per_process"]
    lines += ["",
              f"Target (one maps read, one readlink): publishers after: {after_pub.get('maps', 0):.2f} maps, "
              f"{after_pub.get('exe', 0):.2f} exe. `other` is the modules' ELF files reached through "
              "`/proc/PID/root/...` (the symbolizer and the TLS locator, once per file, not per process) and "
              "`map_files`. `record` finds no containers; the agent adds a `/proc/PID/cgroup` read per new cgroup, "
              "not per process.",
              "",
              f"**Encoding** (section 4's synthetic node: {a['samples']:,} samples, 200 processes; median of "
              f"{ENCODE_REPEATS} runs; allocations: heap allocation calls counted by "
              "`hack/bench-support/alloc-count.c` preloaded, a run of 3 encodes less a run of 1, halved: both "
              "encoders and their gzip):",
              "",
              "| build | OTLP builder | per sample | pprof serialize | allocations per encode (OTLP + pprof) | per sample |",
              "|---|---|---|---|---|---|"]
    for label, x in (("before", b), ("after", a)):
        lines.append(f"| {label} | {x['otlp_encode_ms']:.1f} ms | {1000 * x['otlp_encode_ms'] / x['samples']:.2f} us | "
                     f"{x['pprof_serialize_ms']:.1f} ms | {x['allocations_per_repeat']:,.0f} | "
                     f"{x['allocations_per_sample']:.1f} |")
    speed = b["otlp_encode_ms"] / a["otlp_encode_ms"]
    allocs = b["allocations_per_repeat"] / max(1, a["allocations_per_repeat"])
    own = ""
    if a.get("otlp_allocations") is not None:
        own = (f" Counted inside the after build (one encode each): the OTLP builder "
               f"{a['otlp_allocations']:,} allocations ({a['otlp_allocations'] / a['samples']:.2f} per sample), "
               f"the pprof serializer {a['pprof_allocations']:,} ({a['pprof_allocations'] / a['samples']:.2f} per sample);"
               " the before build cannot count its stages apart.")
    lines += ["",
              f"Target (at least 2x cheaper): OTLP builder {speed:.1f}x faster "
              f"({'met' if speed >= 2 else '**missed**'}); allocations of both encoders together {allocs:.1f}x fewer "
              f"({'met' if allocs >= 2 else '**missed**'}).{own} "
              f"Output: {b['otlp_raw_bytes']:,} raw bytes before, {a['otlp_raw_bytes']:,} after "
              f"({a['requests']} request{'s' if a['requests'] != 1 else ''}).",
              f"Command: `{a['command']}`.",
              "",
              f"**CPU and memory at 19 Hz on the loaded machine** (one burner per CPU; "
              f"{PIPELINE['agent_seconds']} s each; user + system time over wall time, peak RSS of a run alone):",
              "",
              "| tool | CPU (% of one core) | peak RSS |",
              "|---|---|---|"]
    for name, key in (("nodeprof record, before", "cpu_before"), ("nodeprof record, after", "cpu_after"),
                      ("perf record -F 19 -a -g", "cpu_perf"), ("bpftrace profile:hz:19 (kstack, ustack, comm)",
                                                                "cpu_bpftrace")):
        x = p[key]
        lines.append(f"| {name} | {x['cpu_pct']:.2f}% | {x['rss_kib'] / 1024:.1f} MiB |")
    lines += ["", "At 19 Hz a run uses tens of milliseconds of CPU in 30 s: one run per tool cannot tell the two "
              "builds apart (their order changed between runs of this section); the peers show the scale.",
              "", "Commands: " + "; ".join(f"`{p[k]['command']}`" for k in ("cpu_after", "cpu_perf", "cpu_bpftrace"))
              + ".", ""]
    return lines


if __name__ == "__main__":
    main()
