#!/usr/bin/env python3
"""What one ironpxe costs a real Ironic at fleet scale, side by side with the poller it replaced.

Runs in the venv `.ci/ironic-venv` installs (Ironic 39, sqlite, one API worker, fake hardware:
the configuration issue 24 was measured on). For each N it enrols N nodes with one port each
straight into Ironic's database — rows copied from a node and a port first created through
Ironic's own API, so every column is what Ironic itself writes — and measures:

* what each kind of request ironpxe (or its predecessor) sends costs Ironic, in CPU seconds
  of Ironic's processes (`/proc/<pid>/stat`, every process of its group) per request;
* the steady state: Ironic's CPU with 1 % of the nodes changing per minute (PATCHes of
  `extra`), first without and then with `ironpxe serve --ironic-url` running; the difference
  is what ironpxe costs. Meanwhile a node in `wait call-back` gets a new `deploy_kernel`
  every few seconds and the time until ironpxe's HTTP answer for its MAC names it is taken
  (propagation, from the moment Ironic's API answered the PATCH);
* the first complete state after a cold start (no cache), and ironpxe's own CPU and RSS.

Prints one JSON object per N on stdout (the shell wrapper turns them into BENCHMARKS.md).
Reports only: nothing here fails on a number.
"""

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid as uuidlib

HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_cpu(pgid):
    """CPU seconds (user + system) of every live process in a process group."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is state (field 3); pgrp is field 5, utime 14, stime 15.
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / HZ


def rss_mb(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


class Api:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None, timeout=600):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("X-OpenStack-Ironic-API-Version", "latest")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None, len(raw)

    def walk(self, first):
        """Every page of a listing by `next` links (what the old poller did); bytes read."""
        path, total = first, 0
        while path:
            doc, n = self.call("GET", path)
            total += n
            nxt = doc.get("next")
            path = nxt[nxt.index("/v1/"):] if nxt else None
        return total


class RabbitMq:
    """Debian's rabbitmq-server with its own epmd, every socket on 127.0.0.1, in `dir`."""

    SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"

    def __init__(self, dir):
        if not os.path.exists(self.SERVER) or not shutil.which("epmd"):
            raise SystemExit("--notify needs RabbitMQ: apt-get install rabbitmq-server")
        os.makedirs(os.path.join(dir, "mnesia"), exist_ok=True)
        os.makedirs(os.path.join(dir, "log"), exist_ok=True)
        self.port, epmd_port, dist_port = free_port(), free_port(), free_port()
        with open(os.path.join(dir, "rabbitmq.conf"), "w") as f:
            f.write(f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users.guest = true\n")
        with open(os.path.join(dir, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        log = open(os.path.join(dir, "server.out"), "ab")
        self.epmd = subprocess.Popen(["epmd", "-port", str(epmd_port), "-address", "127.0.0.1"],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        env = {**os.environ, "HOME": dir, "ERL_EPMD_PORT": str(epmd_port),
               "RABBITMQ_NODENAME": f"scale{os.getpid()}@localhost",
               "RABBITMQ_MNESIA_BASE": os.path.join(dir, "mnesia"),
               "RABBITMQ_LOG_BASE": os.path.join(dir, "log"),
               "RABBITMQ_CONFIG_FILE": os.path.join(dir, "rabbitmq"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(dir, "enabled_plugins"),
               "RABBITMQ_PID_FILE": os.path.join(dir, "rabbitmq.pid"),
               "RABBITMQ_DIST_PORT": str(dist_port),
               "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}"}
        self.server = subprocess.Popen([self.SERVER], stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=log, env=env, start_new_session=True)
        deadline = time.time() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                if time.time() > deadline or self.server.poll() is not None:
                    raise SystemExit("RabbitMQ did not start; see " + dir)
                time.sleep(0.2)

    def stop(self):
        for p in (self.server, self.epmd):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()


class Ironic:
    def __init__(self, venv, root, dir, workers, rabbit=None):
        self.venv, self.dir = venv, dir
        self.port = free_port()
        self.api = Api(f"http://127.0.0.1:{self.port}")
        for sub in ("state", "tmp", "locks", "httpboot", "tftpboot", "images",
                    "master_images", "tftp_master", "iso_master", "deploy_logs"):
            os.makedirs(os.path.join(dir, sub), exist_ok=True)
        with open(os.path.join(root, "tests/fixtures/ironic/ironic-parking.conf")) as f:
            conf = f.read()
        conf = (conf.replace("@IRONIC_DIR@", dir)
                .replace("@API_PORT@", str(self.port))
                .replace("@IMG_PORT@", "9")
                # Request logging at debug costs Ironic CPU the measurement would count.
                .replace("debug = true", "debug = false")
                .replace("api_workers = 1", f"api_workers = {workers}")
                # A conductor's periodic walk of every node it maps (every 180 s; only
                # takes over nodes from a dead conductor, and there is one here): at
                # 100 000 nodes seconds of CPU that land in whichever window is running.
                .replace("[conductor]\n", "[conductor]\nsync_local_state_interval = 0\n", 1))
        if rabbit:
            # Versioned notifications, as README "Ironic as the source" tells operators.
            conf = conf.replace("[DEFAULT]\n", "[DEFAULT]\nnotification_level = info\n", 1)
            conf += ("\n[oslo_messaging_notifications]\ndriver = messagingv2\n"
                     f"transport_url = rabbit://guest:guest@127.0.0.1:{rabbit.port}/\nretry = 2\n")
        self.conf = os.path.join(dir, "ironic.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.db = os.path.join(dir, "ironic.sqlite")
        subprocess.run([f"{venv}/bin/ironic-dbsync", "--config-file", self.conf,
                        "create_schema"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, "stderr.log"), "ab")
        self.proc = subprocess.Popen([f"{self.venv}/bin/ironic", "--config-file", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                self.api.call("GET", "/v1", timeout=5)
                return
            except OSError:
                time.sleep(0.3)
        raise SystemExit("Ironic did not answer GET /v1 within 120 s; see " + self.dir)

    def cpu(self):
        return group_cpu(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def mac_of(i):
    return "52:54:%02x:%02x:%02x:%02x" % ((i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255,
                                          i & 255)


def enrol(ironic, n, watched):
    """N nodes, one port each, in one transaction. Node i's state: `watched` of them wait
    for an inspection call-back with iPXE (their answers are what propagation watches, and
    Ironic allows PATCHes in `inspect wait`, not in `wait call-back`), the rest
    are a fleet at rest (active, available, manageable). Half of them were never updated
    (`updated_at` NULL), as in a freshly enrolled fleet."""
    api = ironic.api
    proto, _ = api.call("POST", "/v1/nodes", {
        "driver": "fake-hardware", "boot_interface": "ipxe", "deploy_interface": "direct",
        "inspect_interface": "agent",
        "name": "proto",
        "driver_info": {"deploy_kernel": "http://127.0.0.1:9/ipa.kernel",
                        "deploy_ramdisk": "http://127.0.0.1:9/ipa.initramfs"},
        "properties": {"cpu_arch": "x86_64", "capabilities": "boot_mode:bios"},
        "instance_info": {"image_source": "http://127.0.0.1:9/user.img"}})
    api.call("POST", "/v1/ports", {"node_uuid": proto["uuid"], "address": mac_of(0),
                                   "pxe_enabled": True})
    db = sqlite3.connect(ironic.db)
    db.row_factory = sqlite3.Row
    node = dict(db.execute("SELECT * FROM nodes WHERE uuid = ?", (proto["uuid"],)).fetchone())
    port = dict(db.execute("SELECT * FROM ports WHERE node_id = ?", (node["id"],)).fetchone())
    db.execute("DELETE FROM ports")
    db.execute("DELETE FROM nodes")
    ncols, pcols = [c for c in node if c != "id"], [c for c in port if c != "id"]
    nsql = "INSERT INTO nodes (id, %s) VALUES (?, %s)" % (
        ", ".join(ncols), ", ".join("?" * len(ncols)))
    psql = "INSERT INTO ports (id, %s) VALUES (?, %s)" % (
        ", ".join(pcols), ", ".join("?" * len(pcols)))
    now = time.time()
    rest = ["active"] * 8 + ["available", "manageable"]
    nodes, ports = [], []
    for i in range(1, n + 1):
        row = dict(node)
        row["uuid"] = str(uuidlib.UUID(int=random.getrandbits(128), version=4))
        row["name"] = f"node-{i}"
        row["provision_state"] = "inspect wait" if i <= watched else rest[i % len(rest)]
        row["target_provision_state"] = "manageable" if i <= watched else None
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now - 86400 + i * 0.001))
        row["created_at"] = stamp
        row["updated_at"] = stamp if i % 2 else None
        nodes.append([i] + [row[c] for c in ncols])
        prow = dict(port)
        prow["uuid"] = str(uuidlib.UUID(int=random.getrandbits(128), version=4))
        prow["address"] = mac_of(i)
        prow["node_id"] = i
        prow["created_at"] = stamp
        prow["updated_at"] = None
        ports.append([i] + [prow[c] for c in pcols])
    db.executemany(nsql, nodes)
    db.executemany(psql, ports)
    db.commit()
    uuids = [r[0] for r in db.execute("SELECT uuid FROM nodes ORDER BY id")]
    db.close()
    return uuids


# ironpxe's `fields=` for ports (client.rs PORT_FIELDS); nodes' come from --fields.
PORT_FIELDS = "uuid,address,node_uuid,pxe_enabled,extra"


def request_costs(ironic, uuids, fields, reps):
    """Ironic CPU seconds and wall seconds per request, by kind."""
    api = ironic.api
    some = uuids[len(uuids) // 2]
    kinds = {
        "walk nodes detail (old poller)": lambda: api.walk("/v1/nodes?detail=True&limit=1000"),
        "walk ports detail (old poller)": lambda: api.walk("/v1/ports?detail=True&limit=1000"),
        "walk nodes fields= (start)": lambda: api.walk(f"/v1/nodes?fields={fields}&limit=1000"),
        "walk ports fields= (start)": lambda: api.walk(
            f"/v1/ports?fields={PORT_FIELDS}&limit=1000"),
        "walk nodes fields=uuid (reconcile)": lambda: api.walk("/v1/nodes?fields=uuid&limit=1000"),
        "walk ports fields=uuid (reconcile)": lambda: api.walk("/v1/ports?fields=uuid&limit=1000"),
        "probe nodes updated_at limit=2": lambda: api.call(
            "GET", "/v1/nodes?detail=True&sort_key=updated_at&sort_dir=desc&limit=2"),
        "probe nodes created_at limit=2": lambda: api.call(
            "GET", "/v1/nodes?detail=True&sort_key=created_at&sort_dir=desc&limit=2"),
        "probe nodes id limit=2": lambda: api.call(
            "GET", "/v1/nodes?detail=True&sort_key=id&sort_dir=desc&limit=2"),
        "probe ports id limit=2": lambda: api.call(
            "GET", "/v1/ports?detail=True&sort_key=id&sort_dir=desc&limit=2"),
        "probe ports updated_at limit=2": lambda: api.call(
            "GET", "/v1/ports?detail=True&sort_key=updated_at&sort_dir=desc&limit=2"),
        "probe ports created_at limit=2": lambda: api.call(
            "GET", "/v1/ports?detail=True&sort_key=created_at&sort_dir=desc&limit=2"),
        "nodes in one state, fields=uuid": lambda: api.call(
            "GET", "/v1/nodes?provision_state=inspect%20wait&fields=uuid&limit=1000"),
        "GET /v1/nodes/<uuid>?fields=": lambda: api.call("GET", f"/v1/nodes/{some}?fields={fields}"),
        "GET /v1/ports?node=<uuid>": lambda: api.call(
            "GET", f"/v1/ports?node={some}&fields={PORT_FIELDS}"),
    }
    out = {}
    for name, f in kinds.items():
        n = 1 if name.startswith("walk") else reps
        if n > 1:
            try:
                f()  # warm (caches, first-use imports); a walk is long enough not to need it
            except Exception as e:  # an API that refuses a request is a result too
                out[name] = {"error": str(e)}
                continue
        c0, t0, size = ironic.cpu(), time.monotonic(), 0
        for _ in range(n):
            r = f()
            size = r if isinstance(r, int) else size
        c1, t1 = ironic.cpu(), time.monotonic()
        out[name] = {"cpu_s": (c1 - c0) / n, "wall_s": (t1 - t0) / n, "bytes": size}
    return out


class Churn:
    """PATCHes `extra/churn` of random nodes at `per_min` a minute, from a thread of its own
    with a few requests in flight (one PATCH costs a 100 000-node Ironic ~40 ms, longer than
    the gap between two), so the measurement's own pace never depends on Ironic's latency."""

    def __init__(self, ironic, uuids, per_min):
        self.api, self.uuids, self.gap = ironic.api, uuids, 60.0 / per_min
        self.count = 0
        self.failed = 0
        self.running = False
        self.lock = threading.Lock()

    def _one(self, n):
        try:
            self.api.call("PATCH", f"/v1/nodes/{random.choice(self.uuids)}",
                          [{"op": "add", "path": "/extra/churn", "value": n}])
            with self.lock:
                self.count += 1
        except OSError:
            with self.lock:
                self.failed += 1

    def _run(self):
        nxt, n = time.monotonic(), 0
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            while self.running:
                nxt += self.gap
                pool.submit(self._one, n)
                n += 1
                time.sleep(max(0.0, nxt - time.monotonic()))

    def start(self):
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self):
        self.running = False
        self.thread.join()


def window(ironic, churn, seconds, watch=None):
    """Runs the churn (and the propagation watch) for `seconds`: Ironic's CPU share and
    the PATCHes per minute the churn achieved."""
    c0, t0, n0 = ironic.cpu(), time.monotonic(), churn.count
    churn.start()
    end = t0 + seconds
    while time.monotonic() < end:
        if watch:
            watch.step()
        time.sleep(0.02)
    churn.stop()
    took = time.monotonic() - t0
    return (ironic.cpu() - c0) / took, (churn.count - n0) * 60 / took


class Watch:
    """Changes an inspecting node's deploy_kernel and times until ironpxe serves it."""

    def __init__(self, ironic, http, watched, every):
        self.api, self.http, self.watched, self.every = ironic.api, http, watched, every
        self.pending = None
        self.next = time.monotonic() + 1
        self.samples = []
        self.seq = 0

    def step(self):
        now = time.monotonic()
        if self.http is None:
            # Without ironpxe: the same PATCHes at the same pace, so their cost is in the
            # baseline and the difference is ironpxe's alone.
            if now >= self.next:
                self.patch()
            return
        if self.pending:
            mac, mark, since = self.pending
            try:
                with urllib.request.urlopen(f"{self.http}/ipxe/{mac}", timeout=5) as r:
                    body = r.read().decode(errors="replace")
            except OSError:
                body = ""
            if mark in body:
                self.samples.append(now - since)
                self.pending = None
            elif now - since > 60:
                self.samples.append(float("inf"))
                self.pending = None
            return
        if now < self.next:
            return
        self.pending = self.patch()

    def patch(self):
        """A new deploy_kernel for one watched node: (its MAC, the mark, when Ironic answered)."""
        i = random.randrange(len(self.watched))
        u = self.watched[i]
        self.seq += 1
        mark = f"k{self.seq}x{random.getrandbits(32):08x}"
        self.api.call("PATCH", f"/v1/nodes/{u}", [
            {"op": "add", "path": "/driver_info/deploy_kernel",
             "value": f"http://127.0.0.1:9/{mark}/ipa.kernel"}])
        self.next = time.monotonic() + self.every
        return (mac_of(i + 1), mark, time.monotonic())


def metric(http, name):
    with urllib.request.urlopen(f"{http}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def start_ironpxe(binary, root, ironic, scratch, interval, rabbit=None):
    cfg = os.path.join(scratch, "ironpxe.toml")
    state = os.path.join(scratch, "ironpxe-state")
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    tftp, http = free_port(), free_port()
    with open(cfg, "w") as f:
        f.write(f"""state_dir = "{state}"
templates = "{root}/templates"
tftp_root = "{root}/tftp-root"
tftp_listen = ["127.0.0.1:{tftp}"]
http_listen = "127.0.0.1:{http}"
[images]
allowed_urls = ["127.0.0.1"]
[ironic]
url = "{ironic.api.base}"
interval_secs = {interval}
""")
        if rabbit:
            f.write(f"""[ironic.notifications]
url = "amqp://guest@127.0.0.1:{rabbit.port}/"
password = "guest"
""")
    log = open(os.path.join(scratch, "ironpxe.log"), "ab")
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "serve", "--config", cfg], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "info"})
    return proc, t0, f"http://127.0.0.1:{http}"


def wait_nodes(proc, http, n, t0):
    while True:
        if proc.poll() is not None:
            raise SystemExit("ironpxe exited; see its log")
        try:
            if (metric(http, "ironpxe_nodes") or 0) >= n:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.05)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else None


def run(args, n):
    scratch = tempfile.mkdtemp(prefix=f"ironic-scale-{n}-", dir=args.scratch)
    rabbit = RabbitMq(os.path.join(scratch, "rabbitmq")) if args.notify else None
    ironic = Ironic(args.venv, args.root, os.path.join(scratch, "ironic"), args.api_workers,
                    rabbit)
    result = {"n": n}
    try:
        ironic.start()
        t = time.monotonic()
        uuids = enrol(ironic, n, args.watched)
        result["enrol_s"] = time.monotonic() - t
        time.sleep(2)
        c0 = ironic.cpu()
        time.sleep(args.idle)
        result["idle_share"] = (ironic.cpu() - c0) / args.idle
        result["requests"] = request_costs(ironic, uuids, args.fields, args.reps)
        per_min = max(1, n // 100)
        result["churn_per_min"] = per_min
        churn = Churn(ironic, uuids, per_min)
        result["share_churn_only"], result["churn_only_per_min"] = window(
            ironic, churn, args.window, Watch(ironic, None, uuids[:args.watched], args.every))
        for mode in ["poll"] + (["notify"] if rabbit else []):
            proc, t0, http = start_ironpxe(args.ironpxe, args.root, ironic, scratch,
                                           args.interval, rabbit if mode == "notify" else None)
            key = "" if mode == "poll" else "_notify"
            try:
                result["first_state_s" + key] = wait_nodes(proc, http, n, t0)
                time.sleep(3 if mode == "notify" else 1)
                c0 = ironic.cpu()
                time.sleep(args.idle)
                result["idle_share_ironpxe" + key] = (ironic.cpu() - c0) / args.idle
                cpu0 = proc_cpu(proc.pid)
                watch = Watch(ironic, http, uuids[:args.watched], args.every)
                t = time.monotonic()
                result["share_churn_ironpxe" + key], result["churn_ironpxe_per_min" + key] = \
                    window(ironic, churn, args.window, watch)
                result["ironpxe_cpu_share" + key] = (
                    (proc_cpu(proc.pid) - cpu0) / (time.monotonic() - t))
                result["ironpxe_rss_mb" + key] = rss_mb(proc.pid)
                s = watch.samples
                result["propagation" + key] = {
                    "samples": len(s), "p50": pct(s, 50), "p99": pct(s, 99),
                    "max": max(s) if s else None}
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
    finally:
        ironic.stop()
        if rabbit:
            rabbit.stop()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="the ironpxe checkout")
    p.add_argument("--venv", required=True)
    p.add_argument("--ironpxe", required=True, help="the ironpxe binary")
    p.add_argument("--fields", required=True, help="ironpxe's node fields= list")
    p.add_argument("--n", type=int, action="append", required=True)
    p.add_argument("--scratch", default=None)
    p.add_argument("--watched", type=int, default=20)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--idle", type=float, default=10)
    p.add_argument("--window", type=float, default=60)
    p.add_argument("--every", type=float, default=3)
    p.add_argument("--interval", type=int, default=2)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--api-workers", type=int, default=1)
    p.add_argument("--notify", action="store_true",
                   help="also run ironpxe on Ironic's notifications (RabbitMQ)")
    p.add_argument("--report", help="splice the results into this Markdown file")
    p.add_argument("--from-results", help="report the JSON lines of an earlier run instead")
    p.add_argument("--notes", default="", help="text under the tables")
    args = p.parse_args()
    results = []
    if args.from_results:
        with open(args.from_results) as f:
            results = [json.loads(line) for line in f if line.startswith('{"n"')]
    for n in [] if args.from_results else args.n:
        r = run(args, n)
        results.append(r)
        print(json.dumps(r), flush=True)
    if args.report:
        commit = subprocess.run(["git", "-C", args.root, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip() or "?"
        meta = {"date": time.strftime("%Y-%m-%d"), "commit": commit, "cpus": os.cpu_count(),
                "api_workers": args.api_workers, "window": args.window, "idle": args.idle,
                "notes": args.notes}
        splice(args.report, report(results, meta))



def fmt(x, unit="", digits=1):
    return "—" if x is None else f"{x:.{digits}f}{unit}"


def report(results, meta):
    """The BENCHMARKS.md section, between its markers."""
    rows = sorted(results, key=lambda r: r["n"])
    kinds = list(rows[0]["requests"].keys())
    out = [BEGIN, "## Ironic at fleet scale", "",
           f"`bash benches/ironic-scale.sh` ({meta['date']}, ironpxe {meta['commit']}, "
           f"{meta['cpus']} cores). A real Ironic 39.0.0 (SQLite, fake hardware, "
           f"`api_workers = {meta['api_workers']}`, request logging off) with N nodes and one "
           "port each, enrolled into its database as copies of a node and port first created "
           "through its API. Ironic's CPU is read from `/proc` for all its processes. "
           "Reports only: nothing fails on a number.", "",
           "**What each request costs Ironic** (CPU ms; a walk: CPU s for the whole fleet):", "",
           "| request | " + " | ".join(f"N = {r['n']:,}" for r in rows) + " |",
           "|---|" + "---|" * len(rows)]
    for k in kinds:
        cells = []
        for r in rows:
            v = r["requests"].get(k, {})
            if "cpu_s" not in v:
                cells.append("refused")
            elif k.startswith("walk"):
                cells.append(f"{v['cpu_s']:.1f} s")
            else:
                cells.append(f"{v['cpu_s'] * 1000:.0f}")
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    out += ["", "**Steady state**: 1 % of the nodes PATCHed per minute (`extra`), "
            f"{meta['window']:.0f} s without ironpxe, then {meta['window']:.0f} s with "
            "`ironpxe serve --ironic-url` (defaults: `interval_secs = 2`, "
            "`change_overlap_secs = 5`; *notifications*: `[ironic.notifications]` on a local "
            "RabbitMQ, Ironic emitting versioned notifications in every window of that N); "
            "ironpxe's cost is the difference. Idle: Ironic's CPU over "
            f"{meta['idle']:.0f} s with ironpxe running and no changes (without ironpxe: the "
            "first row of each N). Meanwhile a node in `inspect wait` gets a new "
            "`driver_info.deploy_kernel` every few seconds and the time from the PATCH's "
            "answer to ironpxe's `/ipxe/<mac>` naming it is taken (the same PATCHes run in the window without ironpxe). The pre-refresh poller (a "
            "full `detail=True` walk of nodes and ports every 10 s) is derived from the "
            "measured walk costs above: its CPU per walk over max(10 s, the walk's wall time).",
            "",
            "| N | ironpxe | PATCHes/min | Ironic CPU: idle | churn only | with ironpxe | "
            "**ironpxe's share of an Ironic core** | propagation p50 / p99 / max (samples) | "
            "first complete state | ironpxe CPU | ironpxe RSS |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = r["requests"]
        walk = q["walk nodes detail (old poller)"], q["walk ports detail (old poller)"]
        old = sum(w["cpu_s"] for w in walk) / max(10.0, sum(w["wall_s"] for w in walk))
        out.append(
            f"| {r['n']:,} | none | {r['churn_only_per_min']:.0f} "
            f"| {r['idle_share'] * 100:.1f} % | {r['share_churn_only'] * 100:.1f} % | — | — | — "
            f"| — | — | — |")
        out.append(
            f"| {r['n']:,} | pre-refresh poller (derived) | — | — | — | — "
            f"| {min(old, 1.0) * 100:.0f} %"
            f"{' (saturated: walks back to back)' if sum(w['wall_s'] for w in walk) > 10 else ''} "
            f"| ≥ 10 s + a walk ({sum(w['wall_s'] for w in walk):.1f} s) | — | — | — |")
        for key, label in (("", "change probes"), ("_notify", "notifications")):
            if "share_churn_ironpxe" + key not in r:
                continue
            p = r["propagation" + key]
            share = r["share_churn_ironpxe" + key] - r["share_churn_only"]
            out.append(
                f"| {r['n']:,} | {label} | {r['churn_ironpxe_per_min' + key]:.0f} "
                f"| {r['idle_share_ironpxe' + key] * 100:.1f} % | — "
                f"| {r['share_churn_ironpxe' + key] * 100:.1f} % | **{share * 100:.1f} %** "
                f"| {fmt(p['p50'], ' s', 2)} / **{fmt(p['p99'], ' s', 2)}** / "
                f"{fmt(p['max'], ' s', 2)} ({p['samples']}) "
                f"| {fmt(r['first_state_s' + key], ' s')} "
                f"| {r['ironpxe_cpu_share' + key] * 100:.1f} % "
                f"| {r['ironpxe_rss_mb' + key]:.0f} MB |")
    out += ["", meta.get("notes", "").strip(), END]
    return "\n".join(out) + "\n"


BEGIN = "<!-- ironic-scale:begin (benches/ironic-scale.sh writes this section) -->"
END = "<!-- ironic-scale:end -->"


def splice(path, section):
    """Replaces the section between the markers in `path` (or appends it)."""
    try:
        text = open(path).read()
    except FileNotFoundError:
        text = ""
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + section.rstrip("\n") + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
