#!/bin/bash
# boot-prototype.sh — research artifact, not used by imgboot or CI. Boots a Debian tree or raw
# image with its own systemd as PID 1, by hand, the way imgboot's Boot stage is meant to
# (docs/notes/booting-systemd.md has the findings). Needs root.
#
#   tools/lib/boot-prototype.sh [OPTIONS] TREE-DIR|IMAGE.raw
#
#   --action poweroff|halt|reboot|exit|term|none
#                     what to do once READY=1 came: send SIGRTMIN+4 / SIGRTMIN+3 / SIGINT /
#                     `systemctl exit 3` / SIGTERM / SIGKILL to PID 1 and report what waitpid()
#                     says (default poweroff); SIGKILL after 30 s if PID 1 is still there
#   --omit PIECE,...  leave a piece of the recipe out, to see what breaks. PIECES:
#                     console (no /dev/console), console-null (/dev/console = /dev/null),
#                     devpts, shm, mqueue, run (no tmpfs /run), tmp (no tmpfs /tmp),
#                     sys (no /sys), sys-ro (/sys writable), cgroup (nothing at /sys/fs/cgroup),
#                     cgroupns (no cgroup namespace), proc-ro (/proc/sys etc. writable),
#                     container-env (no container=), container-uuid, notify (no NOTIFY_SOCKET),
#                     run-host (notify socket at /run/imgboot-notify, no /run/host),
#                     caps (keep the full bounding set), sys-boot (drop CAP_SYS_BOOT too),
#                     dev-tty (no /dev/tty), machine-id (no /etc/machine-id file at all)
#                     Careful: without sys, cgroup or cgroupns, systemd builds its cgroup tree
#                     outside imgboot/ (host v1 hierarchies, or the unified root): rmdir it
#                     by hand afterwards (init.scope, system.slice, *.mount at the top levels).
#   --settle S        wait S seconds after READY=1 before checking (default 0)
#   --timeout S       give up waiting for READY=1 after S seconds (default 30)
#   --log DIR         keep the console log and notify messages in DIR
#   --check 'CMD'     also run the shell command CMD inside once ready (repeatable)
#   --login           once ready, log in as root on the console (the pty) and run a command
#
# Layout: this script (host side) attaches the image's partitions read-only (losetup -o
# --sizelimit -r; no partition scanning), makes a cgroup under the unified hierarchy and runs
# a small Python supervisor. The supervisor opens a pty (the console) and a notify socket,
# unshares a PID namespace and forks: the child — PID 1 of the new namespace — moves itself
# into the cgroup, then execs `unshare --mount --uts --ipc --cgroup --propagation private
# capsh --drop=… -- INNER`, and INNER (the bash at the bottom, still PID 1) builds the tree
# and execs systemd. The supervisor relays the console to a log, waits for READY=1, runs
# `systemctl is-system-running` and `systemctl --failed` inside, powers the machine off and
# prints the wait status of PID 1. Everything is undone on exit: processes, loop devices,
# cgroups (depth first), state directory; the mounts die with the mount namespace.
set -euo pipefail
export LC_ALL=C

die() { echo "boot-prototype: $*" >&2; exit 125; }

action=poweroff omit="" settle=0 timeout=30 logdir="" login=0
declare -a checks=()
while (($#)); do
	case $1 in
	--action) action=$2; shift 2 ;;
	--omit) omit+=",$2"; shift 2 ;;
	--settle) settle=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--log) logdir=$2; shift 2 ;;
	--check) checks+=("$2"); shift 2 ;;
	--login) login=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
	-*) die "unknown option $1" ;;
	*) break ;;
	esac
done
(($# == 1)) || die "usage: boot-prototype.sh [OPTIONS] TREE-DIR|IMAGE.raw"
((EUID == 0)) || die "needs root"
src=$(readlink -f "$1")
case $action in poweroff | halt | reboot | exit | term | none) ;; *) die "bad --action $action" ;; esac
for c in unshare capsh losetup sfdisk python3 busybox nsenter; do
	command -v "$c" >/dev/null || die "$c not found"
done
[[ -d /sys/fs/cgroup/unified ]] && cg2=/sys/fs/cgroup/unified || cg2=/sys/fs/cgroup
[[ $(stat -f -c %T "$cg2") == cgroup2fs ]] || die "no cgroup2 hierarchy at $cg2"

name=proto-$$
state=$(mktemp -d /tmp/imgboot-proto.XXXXXX)
cgroup=$cg2/imgboot/$name
declare -a loops=()
cleanup() {
	local d l
	# systemd leaves its own sub-cgroups behind (init.scope, system.slice/…): depth first
	if [[ -d $cgroup ]]; then
		while read -r d; do rmdir "$d" 2>/dev/null || echo "boot-prototype: cannot remove $d" >&2; done \
			< <(find "$cgroup" -depth -type d)
	fi
	rmdir "$cg2/imgboot" 2>/dev/null || true
	for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
	rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$state"/{host,root,lower,ovl} "$cgroup"
chmod 0755 "$state/host"

# ---- what to boot: a directory, or a GPT image (root, and home/srv when present) ----------
declare -a parts=() # "MOUNTPOINT LOWER" pairs, the root first
if [[ -d $src ]]; then
	parts+=("/ $src")
elif [[ -f $src ]]; then
	while read -r type start size; do
		case $type in
		4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709) mp=/ ;;
		933AC7E1-2EB4-4F13-B844-0E14E2AEF915) mp=/home ;;
		3B8F8425-20E0-4F3B-907F-1A25A76F98E8) mp=/srv ;;
		*) continue ;;
		esac
		l=$(losetup -f --show -r -o "$start" --sizelimit "$size" "$src")
		loops+=("$l")
		if [[ $mp == / ]]; then parts=("/ $l" "${parts[@]}"); else parts+=("$mp $l"); fi
	done < <(sfdisk -J "$src" | python3 -c 'import json, sys
t = json.load(sys.stdin)["partitiontable"]
for p in t["partitions"]:
    print(p["type"].upper(), p["start"] * t.get("sectorsize", 512), p["size"] * t.get("sectorsize", 512))')
	[[ ${parts[0]:-} == "/ "* ]] || die "$src: no root-x86-64 partition"
else
	die "$src: neither a directory nor an image file"
fi

# ---- the capability bounding set: exactly what systemd-nspawn 252 keeps ---------------------
keep=cap_chown,cap_dac_override,cap_dac_read_search,cap_fowner,cap_fsetid,cap_kill,cap_setgid,cap_setuid,cap_setpcap,cap_linux_immutable,cap_net_bind_service,cap_net_broadcast,cap_net_raw,cap_ipc_owner,cap_sys_chroot,cap_sys_ptrace,cap_sys_admin,cap_sys_boot,cap_sys_nice,cap_sys_tty_config,cap_mknod,cap_lease,cap_audit_write,cap_audit_control,cap_setfcap
[[ $omit == *,sys-boot* ]] && keep=${keep/cap_sys_boot,/}
drop=""
for ((i = 0; i <= $(cat /proc/sys/kernel/cap_last_cap); i++)); do
	c=$(capsh --decode="$(printf '%x' $((1 << i)))" | cut -d= -f2)
	[[ ,$keep, == *,$c,* ]] || drop+=${drop:+,}$c
done
[[ $omit == *,caps* ]] && drop=""

# ---- the part that runs as PID 1 of the new namespaces, up to exec of systemd -------------
cp "$(command -v busybox)" "$state/busybox" # static (busybox-static): still runs after pivot_root, whatever the image has
cat >"$state/inner.sh" <<'INNER'
set -eu
has() { [[ $OMIT != *,$1,* ]]; }
R=$STATE/root
# 1. the tree: every partition read-only below, a tmpfs above (--volatile=overlay)
mount -t tmpfs -o mode=0755 tmpfs "$STATE/ovl"
i=0
for p in "${PARTS[@]}"; do
	mp=${p%% *} lower=${p#* }
	i=$((i + 1))
	if [[ -b $lower ]]; then
		mkdir -p "$STATE/lower/$i"
		mount -t ext4 -o ro,norecovery "$lower" "$STATE/lower/$i"
		lower=$STATE/lower/$i
	fi
	mkdir -p "$STATE/ovl/$i/upper" "$STATE/ovl/$i/work"
	mount -t overlay overlay \
		-o "lowerdir=$lower,upperdir=$STATE/ovl/$i/upper,workdir=$STATE/ovl/$i/work" "$R${mp%/}"
done
has machine-id || rm -f "$R/etc/machine-id"

# 2. API filesystems
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
if has sys; then
	if has sys-ro; then o=ro; else o=rw; fi
	mount -t sysfs -o $o,nosuid,nodev,noexec sysfs "$R/sys"
	# cgroup2, rooted (by the cgroup namespace) at this machine's own cgroup
	has cgroup && mount -t cgroup2 -o rw,nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"
fi
mount -t tmpfs -o mode=0755,size=4m,nosuid tmpfs "$R/dev"
for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
	IFS=: read -r f ma mi <<<"$n"
	[[ $f == tty ]] && ! has dev-tty && continue
	mknod -m 0666 "$R/dev/$f" c "$ma" "$mi"
done
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
if has devpts; then
	mkdir -m 0755 "$R/dev/pts"
	mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$R/dev/pts"
	ln -s pts/ptmx "$R/dev/ptmx"
fi
if has shm; then
	mkdir -m 1777 "$R/dev/shm"
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
fi
if has mqueue; then
	mkdir -m 0755 "$R/dev/mqueue"
	mount -t mqueue -o nosuid,nodev,noexec mqueue "$R/dev/mqueue"
fi
if has console; then
	touch "$R/dev/console" # a file to bind the pty over
	if has console-null; then
		mount --bind "$CONSOLE" "$R/dev/console"
	else
		mount --bind "$R/dev/null" "$R/dev/console"
	fi
fi
if has run; then
	mount -t tmpfs -o mode=0755,nosuid,nodev,size=20% tmpfs "$R/run"
fi
if has run-host; then
	mkdir -p "$R/run/host"
	mount --bind "$STATE/host" "$R/run/host" # holds the notify socket
	NOTIFY=/run/host/notify
else
	touch "$R/run/imgboot-notify"
	mount --bind "$STATE/host/notify" "$R/run/imgboot-notify"
	NOTIFY=/run/imgboot-notify
fi
has tmp && mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
if has proc-ro; then
	for f in sys sysrq-trigger; do # no sysrq-trigger without CONFIG_MAGIC_SYSRQ (as here)
		[[ -e $R/proc/$f ]] && mount --bind "$R/proc/$f" "$R/proc/$f"
	done
	for f in kcore keys timer_list kallsyms; do
		[[ -e $R/proc/$f ]] && mount --bind "$R/dev/null" "$R/proc/$f"
	done
fi
mkdir "$R/run/.proto" && cp "$STATE/busybox" "$R/run/.proto/busybox"

# 3. pivot_root, and detach the old root (runc's "pivot_root . ." trick: no directory needed)
cd "$R"
pivot_root . .
/run/.proto/busybox umount -l .
cd /
# 4. read-only remounts last
bb=/run/.proto/busybox
if has proc-ro; then
	$bb mount -o remount,bind,ro /proc/sys
	[[ -e /proc/sysrq-trigger ]] && $bb mount -o remount,bind,ro /proc/sysrq-trigger
fi
has run-host && $bb mount -o remount,bind,ro,nosuid,nodev,noexec /run/host
# 5. hostname
$bb hostname "$HOSTNAME_"
rm -rf /run/.proto
# 6. capabilities: already dropped from the bounding set by capsh before this script ran
# 7. exec systemd with a clean environment
declare -a env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=vt220
	HOME=/root USER=root LOGNAME=root)
has container-env && env+=(container=imgboot)
has container-uuid && env+=("container_uuid=$UUID_")
has notify && env+=("NOTIFY_SOCKET=$NOTIFY")
for v in $(compgen -e); do unset "$v"; done
export "${env[@]}"
echo "$EPOCHREALTIME" >&3
exec 3>&-
exec /usr/lib/systemd/systemd
INNER

# ---- the supervisor -------------------------------------------------------------------------
cat >"$state/supervise.py" <<'PY'
import ctypes, fcntl, os, pty, select, signal, socket, subprocess, sys, termios, time
state, cgroup, omit, action, settle, timeout, logdir, drop, checks, login = sys.argv[1:11]
parts = sys.argv[11:]
settle, timeout = float(settle), float(timeout)
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWPID = 0x20000000

master, slave = pty.openpty()
console = os.ttyname(slave)
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(f"{state}/host/notify")
notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
rd, wr = os.pipe()
clog = open(f"{logdir or state}/console.log", "wb")
nlog = open(f"{logdir or state}/notify.log", "w")

if libc.unshare(CLONE_NEWPID) != 0:
    sys.exit(f"unshare(CLONE_NEWPID): {os.strerror(ctypes.get_errno())}")
t_fork = time.time()
pid = os.fork()
if pid == 0:  # PID 1 of the new PID namespace
    try:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.dup2(wr, 3)
        if ",cgroupns," not in omit:
            # into the machine's cgroup *before* the cgroup namespace is made, so that the
            # namespace is rooted there
            with open(f"{cgroup}/cgroup.procs", "w") as f:
                f.write("0")
        ns = ["--mount", "--uts", "--ipc", "--propagation", "private"]
        if ",cgroupns," not in omit:
            ns.append("--cgroup")
        capsh = ["capsh", f"--drop={drop}", "--"] if drop else ["bash"]
        env = {"STATE": state, "OMIT": omit, "CONSOLE": console, "HOSTNAME_": "imgboot-proto",
               "UUID_": "0c0ffee0-0000-4000-8000-00000000b007", "PARTS_": "\n".join(parts),
               "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        script = 'mapfile -t PARTS <<<"$PARTS_"; source "$STATE/inner.sh"'
        os.execvpe("unshare", ["unshare", *ns, *capsh, "-c", script], env)
    except BaseException as e:
        print(f"child: {e}", file=sys.stderr)
    os._exit(127)
os.close(wr)
print(f"supervisor: container PID 1 is host PID {pid}", flush=True)

def inside(*cmd):
    r = subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "-i", "-p", "-C", "--", *cmd],
                       capture_output=True, text=True)
    return (r.stdout + r.stderr).strip()

t_exec = t_ready = t_signal = None
status = None
signals = {"poweroff": signal.SIGRTMIN + 4, "halt": signal.SIGRTMIN + 3, "reboot": signal.SIGINT,
           "exit": None, "term": signal.SIGTERM, "none": signal.SIGKILL}
got_term = []
signal.signal(signal.SIGTERM, lambda *a: got_term.append(1))
signal.signal(signal.SIGINT, lambda *a: got_term.append(1))

def pump(deadline):
    """Relay console and notify until deadline, READY=1 or PID 1's death."""
    global t_exec, t_ready, status
    fds = [master, notify, rd]
    while time.time() < deadline and status is None and not got_term:
        try:
            r, _, _ = select.select([f for f in fds if f is not None], [], [], 0.05)
        except InterruptedError:
            continue
        if master in r:
            try:
                clog.write(os.read(master, 65536)); clog.flush()
            except OSError:
                pass
        if notify in r:
            msg = notify.recv(65536).decode(errors="replace")
            nlog.write(f"{time.time():.6f} {msg!r}\n"); nlog.flush()
            if "READY=1" in msg.split("\n") and t_ready is None:
                t_ready = time.time()
                return
        if rd in r:
            data = os.read(rd, 100)
            if data:
                t_exec = float(data.decode().strip())
            fds[2] = None
        p, st = os.waitpid(pid, os.WNOHANG)
        if p == pid:
            status = st

def converse():
    """Log in as root on the console and run a command; return what the console showed."""
    seen = b""
    def expect(text, limit=10):
        nonlocal seen
        end = time.time() + limit
        while time.time() < end:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                data = os.read(master, 65536)
                clog.write(data); clog.flush()
                seen += data
                if text in seen:
                    return True
        return False
    os.write(master, b"\r")  # the getty prompt was printed before we looked
    if not expect(b"login: "):
        return "no login prompt"
    seen = b""
    os.write(master, b"root\r")
    if not expect(b"# "):
        return "no shell prompt after root: " + seen.decode(errors="replace")[-300:]
    seen = b""
    os.write(master, b"echo LOGIN-$((6*7)); tty\r")
    if not expect(b"/dev/", 5):
        return "command did not run: " + seen.decode(errors="replace")[-300:]
    expect(b"# ", 2)
    return " | ".join(l.strip() for l in seen.decode(errors="replace").splitlines() if l.strip())

def describe(st):
    if os.WIFEXITED(st):
        return f"exited, status {os.WEXITSTATUS(st)}"
    if os.WIFSIGNALED(st):
        return f"killed by signal {os.WTERMSIG(st)} ({signal.Signals(os.WTERMSIG(st)).name})"
    return f"raw {st:#x}"

pump(time.time() + timeout)
if t_exec:
    print(f"supervisor: fork -> exec of systemd: {t_exec - t_fork:.3f}s", flush=True)
if t_ready:
    print(f"supervisor: exec of systemd -> READY=1: {t_ready - t_exec:.3f}s", flush=True)
    if settle:
        pump(time.time() + settle)
    print("is-system-running:", inside("systemctl", "is-system-running"), flush=True)
    failed = inside("systemctl", "--failed", "--plain", "--no-legend", "--no-pager")
    print("failed units:", failed or "(none)", flush=True)
    for c in filter(None, checks.split("\n")):
        print(f"$ {c}\n{inside('sh', '-c', c)}", flush=True)
    if login == "1":
        print("console login:", converse(), flush=True)
    if failed:
        for u in failed.split("\n"):
            unit = u.split()[0]
            print(inside("systemctl", "status", "--no-pager", "-n", "8", unit), flush=True)
elif status is None:
    print(f"supervisor: no READY=1 within {timeout:.0f}s", flush=True)
    print("is-system-running:", inside("systemctl", "is-system-running"), flush=True)
    print("jobs:", inside("systemctl", "list-jobs", "--no-pager"), flush=True)
    action = "none"
if status is None:
    if got_term:
        action = "halt"
    sig = signals[action]
    t_signal = time.time()
    if sig is None:  # "exit": ask systemd for exit.target (`systemctl exit 3`)
        print("systemctl exit 3:", inside("systemctl", "exit", "3"), flush=True)
    else:
        os.kill(pid, sig)
        print(f"supervisor: sent {signal.Signals(sig).name if sig < signal.SIGRTMIN else f'SIGRTMIN+{sig - signal.SIGRTMIN}'} to PID 1 ({action})", flush=True)
    pump(time.time() + 30)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        print("supervisor: had to SIGKILL PID 1", flush=True)
print(f"supervisor: waitpid: {describe(status)} (raw {status:#06x})"
      + (f", {time.time() - t_signal:.3f}s after the signal" if t_signal else ""), flush=True)
if not t_ready:
    clog.flush()
    with open(clog.name, "rb") as f:
        tail = f.read()[-3000:].decode(errors="replace")
    print("---- console (tail) ----\n" + tail)
PY

[[ -n $logdir ]] && mkdir -p "$logdir"
python3 "$state/supervise.py" "$state" "$cgroup" ",${omit#,}," "$action" "$settle" "$timeout" \
	"$logdir" "$drop" "$(printf '%s\n' "${checks[@]}")" "$login" "${parts[@]}"
