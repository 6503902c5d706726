# Shared by tools/demo, tools/test and tools/bench: find Swift, install missing Debian packages.
# Sourced, not run.

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

log() { printf '%s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Swift lives at /opt/swift on the machines here; profile.d puts it on PATH for login shells only.
ensure_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        [ -x /opt/swift/usr/bin/swift ] || die "swift not found (expected on PATH or at /opt/swift/usr/bin)"
        export PATH="/opt/swift/usr/bin:$PATH"
    fi
}

# The Debian packages imgboot builds with, and that its fixtures and tests use.
base_packages=(
    pkg-config libblkid-dev libmount-dev      # building; libseccomp: the container's system
    libseccomp-dev gcc                        # call filter; gcc: imgboot-init, embedded in imgboot
    fdisk e2fsprogs xfsprogs btrfs-progs      # fixture images
    squashfs-tools erofs-utils busybox-static dosfstools
    util-linux python3 systemd-container      # losetup; systemd-dissect/nspawn as references
    procps                                    # pgrep: container tests look for leftover processes
    time                                      # GNU time: the smoke test measures imgboot's memory;
                                              # the hardening tests, inspect's peak RSS
    strace bsdutils libc6-dev                 # hardening tests: stages held by strace, script(1)'s
                                              # pty, a static payload for containers
    gcc-multilib                              # containment tests: a static i386 attacker (cc -m32)
    man-db zsh fish                           # tools/install's test: its manual pages render and
                                              # its completions load and complete in each shell
)

# Installs whatever of "$@" is missing, with one apt-get update at most.
ensure_packages() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
    log "Installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
