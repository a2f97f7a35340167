#!/usr/bin/env python3
"""Two pgcached builds side by side: the relay (`--cache off`) and the miss path (`--cache on`
under `pgbench -S`, which over 1M rows is mostly misses), next to PostgreSQL direct and PgBouncer
(session pooling), on one throwaway cluster.

Every (mode, round) cell runs all targets back to back in an order that rotates from cell to
cell, so the noise of a shared machine falls on all of them alike; compare ratios within a cell.
Then one run per target under `perf stat` (software events: task-clock, syscalls, context
switches) gives the proxy's and PostgreSQL's cost per query.

Usage: bench/before_after.py BEFORE_BINARY AFTER_BINARY [--seconds N] [--rounds N]
                             [--perf-seconds N] [--perf-rounds N]
                             [--modes simple,extended,prepared] [--perf-modes simple,prepared]
                             [--hold]   (start everything, print the ports, wait for Ctrl-C)
Prints Markdown tables; the raw numbers go to bench/results/before_after.json.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "before_after.json"
PERF_EVENTS = "task-clock,context-switches,raw_syscalls:sys_enter"


def log(msg):
    print(f"== {msg}", file=sys.stderr, flush=True)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, tries=100):
    for _ in range(tries):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def children_of(root):
    """Every live process below `root` (and root), as pid -> comm."""
    table = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                text = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            table[int(d)] = (int(text.rsplit(")", 1)[1].split()[1]),
                             text[text.index("(") + 1:text.rindex(")")])
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in out:
            out[pid] = table[pid][1]
            todo += [p for p, (pp, _) in table.items() if pp == pid]
    return out


def parse_perf(path):
    counts = {}
    for line in Path(path).read_text().splitlines():
        cells = line.split(",")
        if len(cells) >= 3 and not line.startswith("#"):
            try:
                counts[cells[2]] = float(cells[0])
            except ValueError:
                pass
    return counts


def busy_share(seconds=1.0):
    """Share of the machine's CPU time that was busy over the next `seconds` (all processes)."""
    def sample():
        cells = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
        idle = cells[3] + cells[4]
        return sum(cells), idle
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def wait_quiet(limit=10.0, threshold=0.3):
    """Waits (up to `limit` seconds) until the machine is under `threshold` busy while
    nothing of the benchmark runs; returns the seconds waited."""
    waited = 0.0
    while waited < limit:
        if busy_share() < threshold:
            return waited
        waited += 1.0
        time.sleep(1.0)
        waited += 1.0
    return waited


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="pgcached-ba-"))
        os.chmod(self.work, 0o755)
        self.procs = []
        self.pgbench = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None)
        self.pgbench = str(self.pgbench or "pgbench")
        self.ports = {}
        self.pids = {}
        # Seconds spent waiting for a quiet machine before runs (the machine is shared).
        self.waited = 0.0

    def spawn(self, name, argv, **kw):
        out = open(self.work / f"{name}.log", "w")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kw)
        self.procs.append(p)
        return p

    def start(self):
        a = self.args
        ports = free_ports(12)
        demo_port, demo_metrics = ports[0], ports[1]
        log("starting the throwaway cluster (pgcached demo of the after build, not measured)")
        demo = self.spawn("demo", [a.after, "demo", "--cache", "off", "--listen",
                                   f"127.0.0.1:{demo_port}", "--metrics-listen",
                                   f"127.0.0.1:{demo_metrics}"])
        self.demo = demo
        pg_port = None
        for _ in range(300):
            m = re.search(r"PostgreSQL \(throwaway\) *127\.0\.0\.1:(\d+)",
                          (self.work / "demo.log").read_text())
            if m:
                pg_port = int(m.group(1))
                break
            time.sleep(0.2)
        if not pg_port:
            sys.exit((self.work / "demo.log").read_text())
        self.ports["direct"] = pg_port
        self.pids["postmaster"] = next(p for p, c in children_of(demo.pid).items()
                                       if c == "postgres" and p != demo.pid
                                       and open(f"/proc/{p}/stat").read().split()[3] == str(demo.pid))
        upstream = f"postgres://pgcached:pgcached_secret@127.0.0.1:{pg_port}/app"
        i = 2
        for build, binary in (("before", a.before), ("after", a.after)):
            for cache in ("off", "on"):
                name = f"{build}-{cache}"
                port, metrics = ports[i], ports[i + 1]
                i += 2
                argv = [binary, "--cache", cache, "--listen", f"127.0.0.1:{port}",
                        "--metrics-listen", f"127.0.0.1:{metrics}", "--upstream", upstream]
                if cache == "off":
                    argv += ["--replication", "off"]
                p = self.spawn(name, argv)
                self.ports[name] = port
                self.pids[name] = p.pid
        bport = ports[i]
        run = self.work / "run"
        run.mkdir()
        (run / "pgbouncer.ini").write_text(f"""[databases]
app = host=127.0.0.1 port={pg_port} dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {bport}
unix_socket_dir =
auth_type = trust
auth_file = {run}/users.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 40
logfile = {run}/pgbouncer.log
pidfile = {run}/pgbouncer.pid
""")
        (run / "users.txt").write_text('"postgres" ""\n')
        as_nobody = []
        if os.getuid() == 0:
            subprocess.run(["chown", "-R", "nobody", str(run)], check=True)
            as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
        subprocess.run(as_nobody + ["pgbouncer", "-d", str(run / "pgbouncer.ini")], check=True)
        self.ports["bouncer"] = bport
        for name, port in self.ports.items():
            if not wait_port(port):
                sys.exit(f"{name} did not start: see {self.work}")
        time.sleep(0.5)
        self.pids["bouncer"] = int((run / "pgbouncer.pid").read_text().strip())
        log("loading pgbench data (scale 10)")
        subprocess.run([self.pgbench, "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres",
                        "-i", "-s", "10", "-q", "app"], check=True, capture_output=True)

    def stop(self):
        try:
            pid = int((self.work / "run" / "pgbouncer.pid").read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass
        for p in reversed(self.procs):
            p.send_signal(signal.SIGINT)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    def pgbench_argv(self, target, mode, seconds):
        return [self.pgbench, "-h", "127.0.0.1", "-p", str(self.ports[target]), "-U", "postgres",
                "-n", "-S", "-c", "8", "-j", "2", "-T", str(seconds), "-M", mode, "app"]

    def tps(self, target, mode, seconds):
        self.waited += wait_quiet()
        p = subprocess.run(self.pgbench_argv(target, mode, seconds), capture_output=True,
                           text=True, timeout=seconds + 60)
        m = re.search(r"^tps = ([0-9.]+)", p.stdout, re.M)
        n = re.search(r"number of transactions actually processed: (\d+)", p.stdout)
        if not m:
            log(f"pgbench against {target} failed: {p.stderr[-400:]}")
            return None, None
        return float(m.group(1)), int(n.group(1))

    def perf(self, target, mode, seconds):
        """One run with perf stat on the proxy's process and on PostgreSQL's."""
        d = self.work / "perf"
        d.mkdir(exist_ok=True)
        tag = f"{target}-{mode}"
        self.waited += wait_quiet()
        groups = {"postgres": [p for p, c in children_of(self.pids["postmaster"]).items()
                               if c == "postgres"]}
        if target != "direct":
            groups["proxy"] = [self.pids[target]]
        stats = [subprocess.Popen(["perf", "stat", "-x,", "-e", PERF_EVENTS, "-p",
                                   ",".join(map(str, pids)), "-o", str(d / f"{tag}.{g}")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for g, pids in groups.items()]
        time.sleep(0.5)
        client = d / f"{tag}.client"
        argv = ["perf", "stat", "-x,", "-e", PERF_EVENTS, "-o", str(client), "--"]
        p = subprocess.run(argv + self.pgbench_argv(target, mode, seconds), capture_output=True,
                           text=True, timeout=seconds + 60)
        time.sleep(0.3)
        for s in stats:
            s.send_signal(signal.SIGINT)
        for s in stats:
            s.wait(timeout=20)
        n = re.search(r"number of transactions actually processed: (\d+)", p.stdout)
        tps = re.search(r"^tps = ([0-9.]+)", p.stdout, re.M)
        if not n:
            return None
        n = int(n.group(1))
        row = {"target": target, "mode": mode, "tps": float(tps.group(1)), "txns": n}
        for g in ("client", "proxy", "postgres"):
            path = d / f"{tag}.{g}"
            if not path.exists():
                continue
            c = parse_perf(path)
            row[f"{g}_cpu_us"] = c.get("task-clock", 0) * 1e3 / n
            row[f"{g}_syscalls"] = c.get("raw_syscalls:sys_enter", 0) / n
            row[f"{g}_cs"] = c.get("context-switches", 0) / n
        return row


TARGETS = ["direct", "bouncer", "before-off", "after-off", "before-on", "after-on"]
LABELS = {
    "direct": "PostgreSQL direct",
    "bouncer": "PgBouncer (session)",
    "before-off": "before --cache off",
    "after-off": "after --cache off",
    "before-on": "before --cache on",
    "after-on": "after --cache on",
}


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[(len(xs) - 1) // 2] if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--perf-seconds", type=int, default=6)
    ap.add_argument("--modes", default="simple,extended,prepared")
    ap.add_argument("--perf-modes", default="simple,prepared")
    ap.add_argument("--perf-rounds", type=int, default=1)
    ap.add_argument("--hold", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    b = Bench(args)
    try:
        b.start()
        if args.hold:
            print(json.dumps({"ports": b.ports, "pids": b.pids, "work": str(b.work)}), flush=True)
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, signal.SIGTERM])
            signal.sigwait([signal.SIGINT, signal.SIGTERM])
            return
        modes = [m for m in args.modes.split(",") if m]
        log("warm-up: one short run per target")
        for t in TARGETS:
            b.tps(t, "simple", 1)
        b.waited = 0.0
        tps = {}
        cell = 0
        for mode in modes:
            for rnd in range(args.rounds):
                order = TARGETS[cell % len(TARGETS):] + TARGETS[:cell % len(TARGETS)]
                cell += 1
                for t in order:
                    tps.setdefault((mode, t), []).append(b.tps(t, mode, args.seconds)[0])
                log(f"{mode} round {rnd + 1}: " + ", ".join(
                    f"{t} {tps[(mode, t)][-1] or 0:.0f}" for t in TARGETS))
        perf = []
        for mode in args.perf_modes.split(","):
            rows = {t: [] for t in TARGETS}
            for rnd in range(args.perf_rounds):
                order = TARGETS[rnd % len(TARGETS):] + TARGETS[:rnd % len(TARGETS)]
                for t in order:
                    row = b.perf(t, mode, args.perf_seconds)
                    if row:
                        rows[t].append(row)
            for t in TARGETS:
                if rows[t]:
                    # The median of each figure over the rounds.
                    perf.append({k: (median([r[k] for r in rows[t]])
                                     if isinstance(v, float) else v)
                                 for k, v in rows[t][0].items()})
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"tps": {f"{m}/{t}": v for (m, t), v in tps.items()},
                                       "perf": perf, "args": vars(args),
                                       "waited_s": b.waited}, indent=1))
        print(f"pgbench -S, 8 clients, 2 threads, {args.seconds} s per run, {args.rounds} rounds "
              f"per mode, targets alternating (waited {b.waited:.0f} s in all for the machine to "
              "be quiet before runs); median tps (ratio to PostgreSQL direct); last "
              "columns: miss (--cache on) over relay (--cache off) of the same build, and "
              "relay over PgBouncer.\n")
        print("| mode | " + " | ".join(LABELS[t] for t in TARGETS)
              + " | before on/off | after on/off | before off/PgBouncer | after off/PgBouncer |")
        print("|---|" + "---:|" * (len(TARGETS) + 4))
        for mode in modes:
            med = {t: median(tps[(mode, t)]) for t in TARGETS}
            cells = [f"{med[t]:,.0f} ({med[t] / med['direct']:.2f}×)" if med[t] else "–"
                     for t in TARGETS]
            ratios = [med["before-on"] / med["before-off"], med["after-on"] / med["after-off"],
                      med["before-off"] / med["bouncer"], med["after-off"] / med["bouncer"]]
            print(f"| {mode} | " + " | ".join(cells) + " | "
                  + " | ".join(f"{r:.2f}×" for r in ratios) + " |")
        print("\nAll rounds (tps):\n")
        for mode in modes:
            print(f"- {mode}: " + "; ".join(
                f"{t} " + "/".join(f"{x:.0f}" for x in tps[(mode, t)] if x) for t in TARGETS))
        print(f"\nperf stat, {args.perf_rounds} run(s) of {args.perf_seconds} s per target "
              "(median), per query: CPU µs, syscalls, context switches\n")
        print("| mode | target | tps | proxy CPU µs | proxy syscalls | proxy ctx sw | "
              "PostgreSQL CPU µs | pgbench CPU µs | all ctx sw |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in perf:
            cs = sum(r.get(f"{g}_cs", 0) for g in ("client", "proxy", "postgres"))
            proxy = (f"{r['proxy_cpu_us']:.1f} | {r['proxy_syscalls']:.2f} | {r['proxy_cs']:.2f}"
                     if "proxy_cpu_us" in r else "– | – | –")
            print(f"| {r['mode']} | {LABELS[r['target']]} | {r['tps']:,.0f} | {proxy} | "
                  f"{r['postgres_cpu_us']:.1f} | {r['client_cpu_us']:.1f} | {cs:.2f} |")
    finally:
        b.stop()


if __name__ == "__main__":
    main()
