#!/usr/bin/env python3
"""The measuring half of tools/bench: imgboot against systemd-dissect and systemd-nspawn.

tools/bench installs the packages, builds imgboot and the images, then runs this script as
root. It measures, prints a table and writes a JSON file. See README.md, "Benchmarks".

Everything this script starts it also stops: the private systemd-udevd (by PID), containers
that time out, and whatever systemd-nspawn leaves behind (its payload/ and supervisor/ cgroups,
/run/systemd/nspawn). It checks at the end that no loop device of a benchmark image is left.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

# ---------------------------------------------------------------------------------------------
# small helpers


def log(msg=""):
    print(msg, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def fmt_time(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1.0:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.3f} s"


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def fmt_rate(r):
    return "-" if r is None else f"{r:.1f}"


def median(xs):
    return statistics.median(xs) if xs else None


def tail(text, n=3):
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return " | ".join(lines[-n:])


class NotifySocket:
    """A notify socket of our own (sd_notify's protocol: datagrams of KEY=VALUE lines), given
    to the booting tool as NOTIFY_SOCKET; both imgboot and nspawn forward the container's
    READY=1 to it with --notify-ready=yes."""

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()
        os.unlink(self.path)

    def environment(self):
        return dict(os.environ, NOTIFY_SOCKET=self.path)

    def wait_ready(self, p, t0, deadline):
        """Seconds from t0 to READY=1, or None when p ends or the deadline passes first."""
        while time.monotonic() < deadline and p.poll() is None:
            self.sock.settimeout(min(0.5, max(0.01, deadline - time.monotonic())))
            try:
                msg = self.sock.recv(4096).decode(errors="replace")
            except socket.timeout:
                continue
            if "READY=1" in msg.split("\n"):
                return time.monotonic() - t0
        return None


def read_status(pid, field):
    """A /proc/PID/status field in KiB (VmHWM, VmRSS), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        return out.strip().splitlines()[0] if out.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info():
    cpu = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = read_meminfo("MemTotal")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "memTotalKiB": mem,
        "os": os_pretty_name(),
        "loadavgStart": loadavg(),
    }


def read_meminfo(field):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def os_pretty_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------------
# the private systemd-udevd


class Udevd:
    """systemd-nspawn --image refuses to run without udev ("requires access to the host's /run/
    hierarchy, since we need access to udev"). When no udevd answers on /run/udev/control, start
    one in the foreground as our child, in its own session, and stop exactly that PID afterwards.

    Not `--daemon`: nspawn finds udevd's PID from the control socket's peer credentials, which
    name the process that created the socket; with --daemon that is the parent, which exits, and
    nspawn fails with "Failed to determine network namespace of udev: No such file or
    directory". No `udevadm trigger`/`settle` is needed: nspawn waits only for the loop devices
    and partitions it makes itself, and udevd handles those events as they come.
    """

    CANDIDATES = ["/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd"]

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        self.info = {"started": False, "pid": None, "alreadyRunning": False}
        self.created = {p: not os.path.exists(p) for p in ("/run/udev", "/dev/disk")}

    @staticmethod
    def running(timeout=2):
        if not os.path.exists("/run/udev/control"):
            return False
        r = subprocess.run(["udevadm", "control", "--ping", f"--timeout={timeout}"], capture_output=True)
        return r.returncode == 0

    def start(self, quiet=False):
        if self.proc or self.info["alreadyRunning"]:
            return
        if self.running():
            self.info["alreadyRunning"] = True
            log("bench: a systemd-udevd is already running; using it")
            return
        path = next((p for p in self.CANDIDATES if os.access(p, os.X_OK)), None)
        if path is None:
            raise RuntimeError("systemd-udevd not found (Debian package 'udev')")
        self.logfile = open(os.path.join(self.workdir, "udevd.log"), "a")
        self.proc = subprocess.Popen([path] + (["--debug"] if os.environ.get("IMGBOOT_BENCH_UDEV_DEBUG") else []), stdin=subprocess.DEVNULL, stdout=self.logfile,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.info.update(started=True, pid=self.proc.pid, command=path)
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{path} exited with {self.proc.returncode}; see {self.logfile.name}")
            if self.running():
                if not quiet:
                    log(f"bench: started {path} (PID {self.proc.pid}) for systemd-nspawn --image")
                self.info["pids"] = self.info.get("pids", []) + [self.proc.pid]
                return
            time.sleep(0.05)
        raise RuntimeError(f"{path} (PID {self.proc.pid}) does not answer on /run/udev/control")

    def ensure(self, bench):
        """udevd answers, or (if it is ours) is restarted: udevd 252 accepts one control
        connection at a time with a listen backlog of 0, and busy, it makes nspawn fail with
        "Failed to connect socket to udev control socket: Resource temporarily unavailable"."""
        if any(self.running(timeout=5) for _ in range(3)):
            return
        if not self.proc:
            bench.note("systemd-udevd", "the running udevd does not answer on /run/udev/control")
            return
        bench.note("systemd-udevd", f"udevd (PID {self.proc.pid}) stopped answering; restarted it")
        self.stop(remove=False)
        self.start()
        self.info["restarts"] = self.info.get("restarts", 0) + 1

    def stop(self, remove=True, quiet=False):
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not quiet:
            log(f"bench: stopped systemd-udevd (PID {self.proc.pid})")
        self.proc = None
        if not remove:
            return
        # what udevd created and nothing else uses once it is gone
        subprocess.run(["rm", "-rf", "--one-file-system"] +
                       [p for p, created in self.created.items() if created])


# ---------------------------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.imgboot = args.imgboot
        self.fixtures = args.fixtures
        self.debian = args.debian
        self.work = tempfile.mkdtemp(prefix="imgboot-bench.")
        self.udevd = Udevd(self.work)
        self.nspawn_ok = None
        self.failures = []
        self.notes = []
        self.commands = {}  # id -> result
        self.result = {
            "schema": 1,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "quick": self.quick,
            "commit": args.commit,
            "machine": machine_info(),
            "tools": {
                "imgboot": first_line([self.imgboot, "--version"]),
                "systemd": first_line(["systemd-nspawn", "--version"]),
                "hyperfine": first_line(["hyperfine", "--version"]),
            },
            "images": {},
            "groups": [],
            "comparisons": [],
            "scaling": [],
            "parallel": [],
            "boot": None,
            "memory": {},
            "stages": {},
            "failures": self.failures,
            "notes": self.notes,
            "udevd": self.udevd.info,
            "cleanup": {},
        }
        self.pre = self.snapshot()
        for name in ("basic", "sparse-64g", "parts-3", "parts-32"):
            self.add_image(name, os.path.join(self.fixtures, name + ".raw"))
        if self.debian:
            self.add_image("debian", self.debian)
        # settings
        q = self.quick
        self.rounds = args.rounds or (2 if q else 5)  # hyperfine runs per group, order rotated
        self.runs = args.runs  # per command per round; default depends on the group
        self.warmup = 1 if q else 2
        self.parallel_levels = [1, 4, 16] if q else [1, 4, 8, 16]
        self.parallel_rounds = 1 if q else 4
        self.boot_runs = args.boot_runs or (1 if q else 10)

    def img(self, name):
        return self.result["images"][name]["path"]

    def add_image(self, name, path):
        st = os.stat(path)
        self.result["images"][name] = {"path": path, "size": st.st_size, "allocated": st.st_blocks * 512}

    # ---- state before/after: what we must leave as we found it ---------------------------

    def cgroup_roots(self):
        """The directories of our own cgroup in the unified and name=systemd hierarchies: where
        systemd-nspawn --keep-unit makes payload/ and supervisor/."""
        roots = []
        with open("/proc/self/cgroup") as f:
            for line in f:
                hid, ctrl, path = line.rstrip("\n").split(":", 2)
                if hid == "0" and ctrl == "":
                    for base in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
                        if os.path.exists(base + "/cgroup.controllers"):
                            roots.append(base + path.rstrip("/"))
                            break
                elif ctrl == "name=systemd":
                    roots.append("/sys/fs/cgroup/systemd" + path.rstrip("/"))
        return roots

    def snapshot(self):
        images = [os.path.realpath(os.path.join(self.fixtures, n + ".raw"))
                  for n in ("basic", "sparse-64g", "parts-3", "parts-32")]
        if self.debian:
            images.append(os.path.realpath(self.debian))
        loops, devs = [], set()
        for dev in os.listdir("/sys/block"):
            try:
                with open(f"/sys/block/{dev}/loop/backing_file") as f:
                    backing = f.read().strip()
            except OSError:
                continue
            if backing in images:
                loops.append(f"/dev/{dev} ({backing})")
                devs.add(f"/dev/{dev}")
        # ours: from a loop device of a benchmark image, or nspawn's (its temporary roots,
        # /run/systemd/nspawn); imgboot's own live in the containers' mount namespaces.
        # Others' mounts (tests running next to us) are none of our business.
        mounts = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                target = fields[4]
                source = fields[fields.index("-") + 2]
                if source in devs or "/nspawn-" in target or target.startswith("/run/systemd/nspawn"):
                    mounts.append(target)
        nspawn_cgroups = [os.path.join(r, d) for r in self.cgroup_roots()
                          for d in ("payload", "supervisor") if os.path.isdir(os.path.join(r, d))]
        return {"loops": loops, "mounts": mounts, "nspawnCgroups": nspawn_cgroups,
                "runSystemdNspawn": os.path.exists("/run/systemd/nspawn")}

    def cleanup(self):
        self.udevd.stop()
        removed, busy = [], []
        # systemd-nspawn --keep-unit leaves payload/ and supervisor/ (and systemd's children
        # in payload/, e.g. init.scope) in our cgroup: rmdir depth first; a cgroup with
        # processes in it cannot be removed (EBUSY), so nothing running is touched.
        for root in self.cgroup_roots():
            for d in ("payload", "supervisor"):
                top = os.path.join(root, d)
                if not os.path.isdir(top):
                    continue
                for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                    try:
                        os.rmdir(dirpath)
                        removed.append(dirpath)
                    except OSError as e:
                        busy.append(f"{dirpath}: {e.strerror}")
        if not self.pre["runSystemdNspawn"] and os.path.exists("/run/systemd/nspawn"):
            subprocess.run(["rm", "-rf", "--one-file-system", "/run/systemd/nspawn"])
            removed.append("/run/systemd/nspawn")
        if not os.environ.get("IMGBOOT_BENCH_KEEP"):
            subprocess.run(["rm", "-rf", "--one-file-system", self.work])
        post = self.snapshot()
        left = {k: [x for x in post[k] if x not in self.pre[k]] for k in ("loops", "mounts")}
        self.result["cleanup"] = {"removed": removed, "notRemoved": busy,
                                  "loopDevicesLeft": left["loops"], "mountsLeft": left["mounts"]}
        for what, items in (("loop devices", left["loops"]), ("mounts", left["mounts"]),
                            ("cgroups", busy)):
            if items:
                self.fail("cleanup", f"left behind: {what}: {', '.join(items)}")

    def note(self, where, message):
        """A finding about the reference tools (their failures are not imgboot's)."""
        log(f"bench: note: {where}: {message}")
        self.notes.append({"where": where, "message": message})

    def fail(self, where, message):
        log(f"bench: FAILED {where}: {message}")
        self.failures.append({"where": where, "message": message})

    # ---- commands ------------------------------------------------------------------------

    def cmd_inspect(self, image):
        return [self.imgboot, "inspect", "--json", self.img(image)]

    def cmd_dissect(self, image):
        return ["systemd-dissect", "--json=short", self.img(image)]

    def cmd_run(self, image, mode, machine="bench", users=None):
        # --machine: the default name (the image's) would collide with anyone else's run of
        # the same image; it costs nothing. users: --private-users (imgboot's default: pick)
        return ([self.imgboot, "run", f"--volatile={mode}", f"--machine={machine}"]
                + ([f"--private-users={users}"] if users else []) + [self.img(image), "--", "/bin/true"])

    # systemd-nspawn with a user namespace as imgboot's default has one: a range it picks (-U:
    # --private-users=pick, ownership auto). The issue asks for --private-users-ownership=map,
    # but systemd 252 refuses it with every --volatile mode but no ("ID mapped mounts are
    # apparently not available"; "Failed to set up ID mapped mounts: Device or resource busy",
    # systemd issue #34254, fixed in 257); auto works in all of them.
    NSPAWN_USERNS = ["-U"]

    def cmd_nspawn(self, image, mode, machine=None, userns=False):
        return (["systemd-nspawn", "-q", "--register=no", "--keep-unit", f"--image={self.img(image)}",
                 f"--volatile={mode}"] + (self.NSPAWN_USERNS if userns else [])
                + ([f"--machine={machine}"] if machine else []) + ["/bin/true"])

    # ---- hyperfine groups ----------------------------------------------------------------

    SETTLE = ["udevadm", "settle", "--timeout=30"]

    def group(self, gid, entries, runs, udev=False, phases=None):
        """Measures commands [(id, tool, argv)] with hyperfine, `rounds` times, rotating their
        order each round so that a change of load hits them all alike; each round warms up
        every command first. Medians over all rounds, of the runs that exited 0 only.

        udev: the group has systemd-nspawn --image in it. Every run (of either tool) then
        starts after `udevadm settle`, so that none pays for udevd still working through the
        previous run's device events; and udevd is checked (restarted if it stopped answering)
        before each round.

        phases: instead of entries/udev, a list of (setup, entries, udev): each round runs
        every phase (their order alternating), calling setup() first; a phase whose setup
        returns False is skipped."""
        runs = self.runs or runs
        if phases is None:
            phases = [(None, entries, udev)]
        all_entries = [e for _, es, _ in phases for e in es]
        times = {cid: [] for cid, _, _ in all_entries}
        failed_runs = {cid: [] for cid, _, _ in all_entries}
        load_before = loadavg()
        t0 = time.monotonic()
        ok = True
        dropped = set()
        for r in range(self.rounds):
            for setup, entries, udev in (phases if r % 2 == 0 else phases[::-1]):
                if setup is not None and setup() is False:
                    continue
                ok = self._round(gid, r, entries, runs, udev, times, failed_runs, dropped) and ok
        load_after = loadavg()
        g = {"id": gid, "rounds": self.rounds, "runsPerRound": runs, "warmup": self.warmup,
             "loadBefore": load_before, "loadAfter": load_after, "ok": ok,
             "seconds": round(time.monotonic() - t0, 1), "commands": []}
        for cid, tool, cmd in all_entries:
            ts = times[cid]
            c = {"id": cid, "tool": tool, "command": shlex.join(cmd), "runs": len(ts),
                 "median": median(ts), "mean": statistics.fmean(ts) if ts else None,
                 "stddev": statistics.stdev(ts) if len(ts) > 1 else None,
                 "min": min(ts) if ts else None, "max": max(ts) if ts else None, "times": ts,
                 "load": load_after[0], "failedRuns": len(failed_runs[cid]),
                 "failedExitStatuses": failed_runs[cid], "failed": cid in dropped}
            g["commands"].append(c)
            self.commands[cid] = c
        self.result["groups"].append(g)
        summary = ", ".join(f"{c['id']} {fmt_time(c['median'])}" for c in g["commands"])
        log(f"bench: {gid}: {summary} (load {load_before[0]:.2f} -> {load_after[0]:.2f}, {g['seconds']} s)")
        return ok

    def _round(self, gid, r, entries, runs, udev, times, failed_runs, dropped):
        """One hyperfine run of the entries not dropped yet, in rotated order. Returns whether
        every run of every command exited 0.

        hyperfine goes on past a failing run (-i) and records each run's exit status; only the
        runs that exited 0 count (times, medians). The warm-up runs are hyperfine's first runs
        of each command, not hyperfine's own --warmup, whose exit statuses it does not report:
        a warm-up that fails is a failure too. Each failing command is run once more on its
        own, for its stderr (hyperfine keeps no output). A failed run of imgboot fails the
        benchmark (exit status 1); one of a reference tool is a note. A command whose every
        run failed is left out of the later rounds."""
        active = [e for e in entries if e[0] not in dropped]
        if not active:
            return False
        if udev:
            self.udevd.ensure(self)
        k = r % len(active)
        order = active[k:] + active[:k]
        out = os.path.join(self.work, re.sub(r"[^A-Za-z0-9.-]+", "_", gid) + f".{r}.json")
        argv = ["hyperfine", "-N", "--style", "none", "--ignore-failure",
                "--runs", str(self.warmup + runs), "--export-json", out]
        if udev:
            argv += ["--prepare", shlex.join(self.SETTLE)]
        for cid, _, cmd in order:
            argv += ["-n", cid, shlex.join(cmd)]
        p = subprocess.run(argv, capture_output=True, text=True)
        results = {}
        if p.returncode == 0:
            with open(out) as f:
                results = {res["command"]: res for res in json.load(f)["results"]}
        ok = True
        for cid, tool, cmd in order:
            report = self.fail if tool == "imgboot" else self.note
            res = results.get(cid)
            if res is None or "exit_codes" not in res:
                # Nothing is known about its runs: as if each had failed.
                why = (f"hyperfine exited {p.returncode}: {tail(p.stderr)}" if p.returncode != 0
                       else "hyperfine reported no exit statuses (hyperfine < 1.12?)")
                report(gid, f"{shlex.join(cmd)}: not measured in round {r + 1}: {why}")
                failed_runs[cid].extend([None] * (self.warmup + runs))
                ok = False
                continue
            # an exit code of null: killed by a signal
            outcomes = list(zip(res["times"], res["exit_codes"]))
            times[cid].extend(t for t, code in outcomes[self.warmup:] if code == 0)
            bad = [code for _, code in outcomes if code != 0]
            if not bad:
                continue
            ok = False
            failed_runs[cid].extend(bad)
            statuses = ", ".join(sorted({"signal" if c is None else f"exit {c}" for c in bad}))
            report(gid, f"{shlex.join(cmd)}: {len(bad)} of {len(outcomes)} runs failed ({statuses}) "
                   f"in round {r + 1}; run again alone: {self.run_alone(cmd, udev)}")
            if len(bad) == len(outcomes):
                dropped.add(cid)
        return ok

    def run_alone(self, cmd, udev):
        """How `cmd` ends when run once more by itself: "exit 0", or its status and stderr."""
        if udev:
            self.udevd.ensure(self)
            subprocess.run(self.SETTLE, capture_output=True)
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return "still running after 120 s (killed)"
        return "exit 0" if p.returncode == 0 else f"exit {p.returncode}: {tail(p.stderr)}"

    def compare(self, name, a, b, target):
        ca, cb = self.commands.get(a), self.commands.get(b)
        if not (ca or cb):
            return  # not measured in this run
        ratio = None
        if ca and cb and ca["median"] and cb["median"]:
            ratio = ca["median"] / cb["median"]
        self.result["comparisons"].append({
            "name": name, "imgboot": a, "reference": b,
            "imgbootMedian": ca and ca["median"], "referenceMedian": cb and cb["median"],
            "ratio": ratio, "target": target,
            "met": None if ratio is None or target is None else ratio <= target,
            "runs": ca and ca["runs"], "load": ca and ca["load"]})

    def scale(self, name, tool, small, big, n_small=None, n_big=None):
        cs, cb = self.commands.get(small), self.commands.get(big)
        if not (cs and cb and cs["median"] and cb["median"]):
            return
        entry = {"name": name, "tool": tool, "small": small, "big": big,
                 "smallMedian": cs["median"], "bigMedian": cb["median"],
                 "ratio": cb["median"] / cs["median"]}
        if n_small and n_big:
            entry["perExtraPartition"] = (cb["median"] - cs["median"]) / (n_big - n_small)
        self.result["scaling"].append(entry)

    # ---- sections ------------------------------------------------------------------------

    def inspect(self):
        runs = 5 if self.quick else 20
        images = [("basic", "sparse-64g")] if self.quick else [("basic", "sparse-64g"), ("parts-3", "parts-32")]
        for n, (small, big) in enumerate(images):
            # the first group also measures each tool's start-up floor: --version
            floor = [] if n else [("imgboot --version", "imgboot", [self.imgboot, "--version"]),
                                  ("systemd-dissect --version", "systemd-dissect", ["systemd-dissect", "--version"])]
            self.group(f"inspect {small}/{big}", floor + [
                (f"imgboot inspect {small}", "imgboot", self.cmd_inspect(small)),
                (f"systemd-dissect {small}", "systemd-dissect", self.cmd_dissect(small)),
                (f"imgboot inspect {big}", "imgboot", self.cmd_inspect(big)),
                (f"systemd-dissect {big}", "systemd-dissect", self.cmd_dissect(big)),
            ], runs)
        self.compare("start-up (--version)", "imgboot --version", "systemd-dissect --version", None)
        for img in ("basic", "sparse-64g", "parts-3", "parts-32"):
            self.compare(f"inspect {img}", f"imgboot inspect {img}", f"systemd-dissect {img}", 0.30)
        for tool, prefix in (("imgboot", "imgboot inspect"), ("systemd-dissect", "systemd-dissect")):
            self.scale("inspect: 64 GiB sparse vs basic", tool, f"{prefix} basic", f"{prefix} sparse-64g")
            self.scale("inspect: 32 vs 3 partitions", tool, f"{prefix} parts-3", f"{prefix} parts-32", 3, 32)

    def run_modes(self):
        """run vs nspawn in each volatile mode, both under the udevd nspawn needs; and, in the
        same rounds, imgboot with no udevd on the machine, as its users run it here (with one
        running, udev's workers probe every new loop device while imgboot mounts it). The
        private udevd is stopped for that phase and started again after it."""
        runs = 3 if self.quick else 10
        modes = ["overlay"] if self.quick else ["state", "yes", "overlay"]
        with_udev = []
        for mode in modes:
            with_udev.append((f"imgboot run {mode} basic", "imgboot", self.cmd_run("basic", mode)))
            with_udev.append((f"imgboot run {mode} basic, no userns", "imgboot", self.cmd_run("basic", mode, users="no")))
            if self.nspawn_ok:
                with_udev.append((f"systemd-nspawn {mode} basic", "systemd-nspawn", self.cmd_nspawn("basic", mode)))
                with_udev.append((f"systemd-nspawn {mode} basic, userns", "systemd-nspawn",
                                  self.cmd_nspawn("basic", mode, userns=True)))
        alone = [(f"imgboot run {m} basic, no udevd", "imgboot", self.cmd_run("basic", m)) for m in modes]

        def stop_udevd():
            if self.udevd.info["alreadyRunning"]:
                return False  # not ours to stop: no measurement without udevd
            self.udevd.stop(remove=False, quiet=True)
            return True

        def start_udevd():
            self.udevd.start(quiet=True)

        phases = [(stop_udevd, alone, False), (start_udevd, with_udev, bool(self.nspawn_ok))]
        self.group("run --volatile=MODE basic", None, runs, phases=phases)
        start_udevd()
        # imgboot's default (a user namespace) against nspawn with one, and both without one.
        for mode in modes:
            self.compare(f"run --volatile={mode} basic, user namespace", f"imgboot run {mode} basic",
                         f"systemd-nspawn {mode} basic, userns", 0.25)
        for mode in modes:
            self.compare(f"run --volatile={mode} basic, no user namespace", f"imgboot run {mode} basic, no userns",
                         f"systemd-nspawn {mode} basic", 0.25)
        for mode in modes:
            self.compare(f"run --volatile={mode} basic, user namespace, imgboot without udevd",
                         f"imgboot run {mode} basic, no udevd", f"systemd-nspawn {mode} basic, userns", 0.25)

    def run_scaling(self):
        runs = 10
        for small, big, ns in (("basic", "sparse-64g", None), ("parts-3", "parts-32", (3, 32))):
            entries = [(f"imgboot run overlay {small}", "imgboot", self.cmd_run(small, "overlay")),
                       (f"imgboot run overlay {big}", "imgboot", self.cmd_run(big, "overlay"))]
            if self.nspawn_ok:
                entries += [(f"systemd-nspawn overlay {small}", "systemd-nspawn", self.cmd_nspawn(small, "overlay")),
                            (f"systemd-nspawn overlay {big}", "systemd-nspawn", self.cmd_nspawn(big, "overlay"))]
            self.group(f"run --volatile=overlay {small}/{big}", entries, runs, udev=self.nspawn_ok)
            what = "64 GiB sparse vs basic" if ns is None else "32 vs 3 partitions"
            for tool, prefix in (("imgboot", "imgboot run overlay"), ("systemd-nspawn", "systemd-nspawn overlay")):
                self.scale(f"run: {what}", tool, f"{prefix} {small}", f"{prefix} {big}", *(ns or (None, None)))
        for img in ("sparse-64g", "parts-3", "parts-32"):
            self.compare(f"run --volatile=overlay {img}", f"imgboot run overlay {img}",
                         f"systemd-nspawn overlay {img}", 0.25)

    def parallel(self, tool):
        """K containers of one image at once (machine names bench-0 … bench-K-1), for each K
        in parallel_levels: batches of K started together, waited for together. The levels
        take turns over `parallel_rounds` rounds (order rotated), so that a change of load hits
        them alike; per round each level runs at least 8 containers. Throughput = containers
        that exited 0 / total wall time of their batches: a container that failed (often
        quickly) is no throughput. Every exit status is checked: a failed imgboot run fails
        the benchmark, a failed reference run is a note."""
        levels = self.parallel_levels
        stats = {k: {"walls": [], "failures": 0, "errors": [], "runs": 0} for k in levels}
        load_before = loadavg()
        for r in range(self.parallel_rounds):
            order = levels[r % len(levels):] + levels[:r % len(levels)]
            for k in order:
                for _ in range(max(1, 8 // k)):
                    if tool != "imgboot":
                        self.udevd.ensure(self)
                        subprocess.run(self.SETTLE, capture_output=True)
                    if tool == "imgboot":
                        cmds = [self.cmd_run("basic", "overlay", f"bench-{i}") for i in range(k)]
                    else:
                        cmds = [self.cmd_nspawn("basic", "overlay", f"bench-{i}") for i in range(k)]
                    t0 = time.monotonic()
                    procs = [subprocess.Popen(c, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.PIPE, text=True) for c in cmds]
                    outs = [p.communicate() for p in procs]
                    st = stats[k]
                    st["walls"].append(time.monotonic() - t0)
                    st["runs"] += k
                    for p, (_, err) in zip(procs, outs):
                        if p.returncode != 0:
                            st["failures"] += 1
                            st["errors"].append(f"exit {p.returncode}: {tail(err, 1)}")
        rows = []
        for k in levels:
            st = stats[k]
            total = sum(st["walls"])
            succeeded = st["runs"] - st["failures"]
            row = {"tool": tool, "containers": k, "batches": len(st["walls"]), "runs": st["runs"],
                   "succeeded": succeeded, "medianWall": median(st["walls"]), "totalWall": total,
                   "runsPerSecond": succeeded / total if total else None, "failures": st["failures"],
                   "errors": sorted(set(st["errors"]))[:5], "loadBefore": load_before, "load": loadavg()[0]}
            rows.append(row)
            if row["failures"]:
                report = self.fail if tool == "imgboot" else self.note
                report(f"parallel {tool} x{k}", f"{row['failures']} of {row['runs']} failed: {'; '.join(row['errors'])}")
            log(f"bench: parallel {tool} x{k}: {fmt_rate(row['runsPerSecond'])} successful runs/s "
                f"(median batch {fmt_time(row['medianWall'])}), {row['failures']} of {row['runs']} failed")
        one = rows[0]["runsPerSecond"] if rows and rows[0]["containers"] == 1 else None
        for row in rows:
            row["speedup"] = row["runsPerSecond"] / one if one and row["runsPerSecond"] is not None else None
        self.result["parallel"] += rows

    def stages(self):
        """imgboot's own account of where the time goes (--log-level=debug: "stage NAME: N µs"),
        the cases taking turns, medians."""
        n = 1 if self.quick else 15
        cases = [("run overlay basic", self.cmd_run("basic", "overlay"))]
        if not self.quick:
            cases = [(f"run {m} basic", self.cmd_run("basic", m)) for m in ("state", "yes", "overlay")]
            cases += [("run overlay sparse-64g", self.cmd_run("sparse-64g", "overlay")),
                      ("run overlay parts-3", self.cmd_run("parts-3", "overlay")),
                      ("run overlay parts-32", self.cmd_run("parts-32", "overlay"))]
        samples = {name: {} for name, _ in cases}
        broken = set()
        for _ in range(n):
            for name, cmd in cases:
                if name in broken:
                    continue
                t0 = time.monotonic()
                p = subprocess.run(cmd[:2] + ["--log-level=debug"] + cmd[2:], capture_output=True, text=True)
                wall = time.monotonic() - t0
                if p.returncode != 0:
                    self.fail(f"stages {name}", f"exit {p.returncode}: {tail(p.stderr)}")
                    broken.add(name)
                    continue
                staged = 0
                for stage, us in re.findall(r"stage (\S+): (\d+) µs", p.stderr):
                    samples[name].setdefault(stage, []).append(int(us))
                    staged += int(us)
                # the whole process as the caller sees it, and what no stage accounts for
                # (process start-up, dissect, option parsing, exit)
                samples[name].setdefault("wall", []).append(round(wall * 1e6))
                samples[name].setdefault("unstaged", []).append(round(wall * 1e6) - staged)
        for name, _ in cases:
            self.result["stages"][name] = {s: median(v) for s, v in samples[name].items()}
            log(f"bench: stages {name}: " + ", ".join(f"{s} {v:.0f} µs" for s, v in self.result["stages"][name].items()))

    def memory_run(self):
        """Peak RSS of `imgboot run` (GNU time's maxrss: the largest of imgboot and the
        processes it waited for)."""
        peaks = []
        for _ in range(3 if self.quick else 5):
            p = subprocess.run(["/usr/bin/time", "-f", "maxrss=%M"] + self.cmd_run("basic", "overlay"),
                               capture_output=True, text=True)
            m = re.search(r"maxrss=(\d+)", p.stderr)
            if p.returncode != 0 or not m:
                self.fail("memory run", f"exit {p.returncode}: {tail(p.stderr)}")
                return
            peaks.append(int(m.group(1)))
        self.result["memory"]["runMaxRssKiB"] = {"median": median(peaks), "max": max(peaks), "samples": peaks}
        log(f"bench: imgboot run maxrss: {max(peaks)} KiB")

    # ---- Debian boot ---------------------------------------------------------------------

    def boot_imgboot(self, timeout=60, users=None):
        """imgboot boot --notify-ready=yes: as nspawn below, imgboot passes the container's
        READY=1 to its own NOTIFY_SOCKET, ours. Then SIGTERM (it asks the init to halt) and
        time until it exits."""
        img = self.img("debian")
        cmd = ([self.imgboot, "boot", "--volatile=overlay", "--console=passive", "--notify-ready=yes",
                "--machine=bench-debian"] + ([f"--private-users={users}"] if users else []) + [img])
        with NotifySocket(os.path.join(self.work, "notify")) as s:
            t0 = time.monotonic()
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, env=s.environment())
            ready = s.wait_ready(p, t0, t0 + timeout)
        hwm = read_status(p.pid, "VmHWM") if ready else None
        rss = read_status(p.pid, "VmRSS") if ready else None
        return self._stop(p, cmd, t0, ready, signal.SIGTERM, [], self.fail, {"vmHWMKiB": hwm, "vmRSSKiB": rss})

    def boot_nspawn(self, timeout=60, userns=False):
        """systemd-nspawn -b --notify-ready=yes: nspawn passes the container's READY=1 (systemd
        sends it when the boot transaction is done, the same signal imgboot reports) to its own
        NOTIFY_SOCKET, ours. Then SIGTERM: nspawn sends the container's init its --kill-signal,
        SIGRTMIN+3 with -b (halt), and exits when the container is gone."""
        img = self.img("debian")
        cmd = (["systemd-nspawn", "-q", "--register=no", "--keep-unit", f"--image={img}",
                "--volatile=overlay", "--console=passive", "--notify-ready=yes", "--machine=bench-debian"]
               + (self.NSPAWN_USERNS if userns else []) + ["-b"])
        with NotifySocket(os.path.join(self.work, "notify")) as s:
            t0 = time.monotonic()
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, env=s.environment())
            ready = s.wait_ready(p, t0, t0 + timeout)
        hwm = read_status(p.pid, "VmHWM") if ready else None
        return self._stop(p, cmd, t0, ready, signal.SIGTERM, [], self.note, {"vmHWMKiB": hwm})

    def _stop(self, p, cmd, t0, ready, sig, err, report, extra):
        off = None
        rc = None
        if p.poll() is None:
            t1 = time.monotonic()
            p.send_signal(sig)
            try:
                _, rest = p.communicate(timeout=30)
                off = time.monotonic() - t1
            except subprocess.TimeoutExpired:
                p.send_signal(sig)  # both: a second one kills
                try:
                    _, rest = p.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    _, rest = p.communicate()
            err.append(rest or "")
        else:
            err.append(p.stderr.read() or "")
            p.wait()
        err = [e.decode(errors="replace") if isinstance(e, bytes) else e for e in err]
        rc = p.returncode
        ok = ready is not None and off is not None and rc == 0
        if not ok:
            report("boot", f"{shlex.join(cmd)}: ready={ready} poweroff={off} exit={rc}: {tail(''.join(err))}")
        return dict(ready=ready, poweroff=off, exit=rc, ok=ok, **extra)

    def boot(self):
        if "debian" not in self.result["images"]:
            return
        tools = [("imgboot", self.boot_imgboot), ("imgboot, no userns", lambda: self.boot_imgboot(users="no"))]
        if self.nspawn_ok:
            tools.append(("systemd-nspawn", self.boot_nspawn))
            tools.append(("systemd-nspawn, userns", lambda: self.boot_nspawn(userns=True)))
        samples = {t: [] for t, _ in tools}
        load_before = loadavg()
        warm = 0 if self.quick else 1
        for i in range(warm + self.boot_runs):
            order = tools if i % 2 == 0 else tools[::-1]
            for tool, fn in order:
                if self.nspawn_ok:  # udevd runs: start from a quiet udev, as the other groups do
                    self.udevd.ensure(self)
                    subprocess.run(self.SETTLE, capture_output=True)
                r = fn()
                r["load"] = loadavg()[0]
                if i >= warm:
                    samples[tool].append(r)
                log(f"bench: boot {tool}{' (warm-up)' if i < warm else ''}: ready {fmt_time(r['ready'])}, "
                    f"poweroff {fmt_time(r['poweroff'])}, exit {r['exit']} (load {r['load']:.2f})")
        out = {"runs": self.boot_runs, "loadBefore": load_before, "loadAfter": loadavg()}
        for tool, rs in samples.items():
            good = [r for r in rs if r["ok"]]
            out[tool] = {
                "readyMedian": median([r["ready"] for r in good]),
                "poweroffMedian": median([r["poweroff"] for r in good]),
                "failures": len(rs) - len(good), "samples": rs,
                "vmHWMKiBMax": max([r["vmHWMKiB"] for r in good if r.get("vmHWMKiB")], default=None),
            }
        self.result["boot"] = out
        i = out["imgboot"]
        pairs = (("user namespace", "imgboot", "systemd-nspawn, userns"), ("no user namespace", "imgboot, no userns", "systemd-nspawn"))
        for label, mine, theirs in pairs:
            a, n = out[mine], out.get(theirs)
            for what, key, target in ((f"boot debian to ready, {label}", "readyMedian", 1.0),
                                      (f"debian poweroff (SIGTERM to exit), {label}", "poweroffMedian", None)):
                ratio = a[key] / n[key] if n and a[key] and n[key] else None
                self.result["comparisons"].append({
                    "name": what, "imgboot": f"imgboot boot ({mine})", "reference": f"systemd-nspawn -b ({theirs})",
                    "imgbootMedian": a[key], "referenceMedian": n and n[key], "ratio": ratio,
                    "target": target, "met": None if ratio is None or target is None else ratio <= target,
                    "runs": self.boot_runs, "load": out["loadAfter"][0]})
        self.result["memory"]["bootVmHWMKiB"] = i["vmHWMKiBMax"]
        if n:
            self.result["memory"]["nspawnBootVmHWMKiB"] = n["vmHWMKiBMax"]

    # ---- nspawn sanity -------------------------------------------------------------------

    def check_nspawn(self):
        """The command the issue names, once: does systemd-nspawn --image work here at all?"""
        cmd = self.cmd_nspawn("basic", "state")
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.nspawn_ok = p.returncode == 0
        self.result["nspawnCheck"] = {"command": shlex.join(cmd), "exit": p.returncode,
                                      "stderr": p.stderr.strip().splitlines()[-10:]}
        if not self.nspawn_ok:
            self.fail("systemd-nspawn", f"{shlex.join(cmd)} exited {p.returncode}: {tail(p.stderr)}; "
                      "measuring imgboot alone")
        else:
            log("bench: systemd-nspawn --image works (" + (tail(p.stderr, 3) or "no messages") + ")")

    # ---- the whole run -------------------------------------------------------------------

    def run(self):
        only = set(self.args.only.split(",")) if self.args.only else None
        want = lambda s: only is None or s in only
        try:
            # without udevd first: imgboot needs none, and systemd-dissect none either
            if want("inspect"):
                self.inspect()
            if want("stages"):
                self.stages()
            if want("parallel"):
                self.parallel("imgboot")
            if want("memory"):
                self.memory_run()
            nspawn_sections = [s for s in ("run", "scale", "parallel", "boot") if want(s)]
            if nspawn_sections:
                try:
                    self.udevd.start()
                    self.check_nspawn()
                except (RuntimeError, OSError) as e:
                    self.fail("systemd-udevd", str(e))
                    self.nspawn_ok = False
                if want("run"):
                    self.run_modes()
                if want("scale") and not self.quick:
                    self.run_scaling()
                if want("parallel") and self.nspawn_ok and not self.quick:
                    self.parallel("systemd-nspawn")
                if want("boot"):
                    self.boot()
        finally:
            self.cleanup()
            self.result["machine"]["loadavgEnd"] = loadavg()
        return self.result


# ---------------------------------------------------------------------------------------------
# output


def table(res):
    m = res["machine"]
    lines = []
    lines.append(f"imgboot {res['tools']['imgboot']} ({res['commit']}) vs {res['tools']['systemd']}, "
                 f"{res['date']}{' (--quick)' if res['quick'] else ''}")
    lines.append(f"{m['cpu']}, {m['cores']} cores, {m['memTotalKiB'] // 1024} MiB, Linux {m['kernel']}, "
                 f"{m['os']}; load {' '.join(f'{x:.2f}' for x in m['loadavgStart'])} at start, "
                 f"{' '.join(f'{x:.2f}' for x in m['loadavgEnd'])} at end")
    lines.append("")
    rows = [("", "imgboot", "reference", "ratio", "target", "runs", "load")]
    for c in res["comparisons"] if res["comparisons"] else []:
        tgt = "-" if c["target"] is None else f"≤ {c['target']:.2f}"
        if c["met"] is False:
            tgt += " MISSED"
        rows.append((c["name"], fmt_time(c["imgbootMedian"]), fmt_time(c["referenceMedian"]),
                     fmt_ratio(c["ratio"]), tgt, str(c["runs"] or "-"),
                     "-" if c["load"] is None else f"{c['load']:.2f}"))
    if len(rows) > 1:
        lines += render(rows, "lrrrlrr")
    if res["scaling"]:
        lines.append("")
        rows = [("how cost grows (medians)", "tool", "small", "big", "big/small", "per extra partition")]
        for s in res["scaling"]:
            rows.append((s["name"], s["tool"], fmt_time(s["smallMedian"]), fmt_time(s["bigMedian"]),
                         fmt_ratio(s["ratio"]), fmt_time(s.get("perExtraPartition")) if "perExtraPartition" in s else "-"))
        lines += render(rows, "llrrrr")
    if res["parallel"]:
        lines.append("")
        rows = [("containers at once (basic, overlay)", "tool", "median batch", "ok runs/s", "vs 1 at a time", "failed")]
        for p in res["parallel"]:
            speedup = "-" if p.get("speedup") is None else f"{p['speedup']:.2f}x"
            if p["tool"] == "imgboot" and p["containers"] == 16 and p.get("speedup") is not None:
                speedup += " (target ≥ 1.50x)" if p["speedup"] >= 1.5 else " MISSED (target ≥ 1.50x)"
            rows.append((str(p["containers"]), p["tool"], fmt_time(p["medianWall"]), fmt_rate(p["runsPerSecond"]),
                         speedup, f"{p['failures']}/{p['runs']}"))
        lines += render(rows, "rlrrrr")
        lines.append("ok runs/s: containers that exited 0 per second of their batches' wall time; "
                     "failed ones count only under \"failed\".")
    mem = res["memory"]
    if mem:
        lines.append("")
        parts = []
        if mem.get("bootVmHWMKiB"):
            hwm = mem["bootVmHWMKiB"] / 1024
            parts.append(f"imgboot VmHWM while Debian runs {hwm:.1f} MiB ({'' if hwm <= 20 else 'MISSED, '}target ≤ 20)")
        if mem.get("nspawnBootVmHWMKiB"):
            parts.append(f"systemd-nspawn's {mem['nspawnBootVmHWMKiB'] / 1024:.1f} MiB")
        if mem.get("runMaxRssKiB"):
            parts.append(f"`imgboot run` maxrss {mem['runMaxRssKiB']['max'] / 1024:.1f} MiB")
        lines.append("memory: " + "; ".join(parts))
    if res["stages"]:
        lines.append("")
        names = []
        for st in res["stages"].values():
            names += [n for n in st if n not in names]
        rows = [("imgboot stages (--log-level=debug, medians)",) + tuple(names)]
        for case, st in res["stages"].items():
            rows.append((case,) + tuple(fmt_time(st[n] / 1e6) if n in st else "-" for n in names))
        lines += render(rows, "l" + "r" * len(names))
    if res["notes"]:
        lines.append("")
        lines.append("notes on the reference tools:")
        lines += [f"  {f['where']}: {f['message']}" for f in res["notes"]]
    if res["failures"]:
        lines.append("")
        lines.append("FAILURES:")
        lines += [f"  {f['where']}: {f['message']}" for f in res["failures"]]
    return "\n".join(lines)


def render(rows, align):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        cells = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--imgboot", required=True)
    ap.add_argument("--fixtures", required=True, help="directory with basic.raw, sparse-64g.raw, parts-3.raw, parts-32.raw")
    ap.add_argument("--debian", help="the Debian image (tools/build-debian-image)")
    ap.add_argument("--json", required=True, help="where to write the results")
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma-separated sections: inspect,stages,parallel,memory,run,scale,boot")
    ap.add_argument("--rounds", type=int, help="hyperfine rounds per group (order rotated each round)")
    ap.add_argument("--runs", type=int, help="runs per command per round")
    ap.add_argument("--boot-runs", type=int)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (loop devices, mounts, containers)")

    # SIGTERM and SIGHUP end the run like Ctrl-C does: through the cleanup
    def stop(signum, _):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    bench = Bench(args)
    try:
        res = bench.run()
    except KeyboardInterrupt:
        log("bench: interrupted; cleaned up")
        return 130
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    print(table(res))
    print(f"\nresults: {os.path.abspath(args.json)}")
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
