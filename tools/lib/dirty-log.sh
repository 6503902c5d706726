#!/bin/bash
# dirty-log.sh FS IMAGE OFFSET SIZE WORKDIR — leave an unreplayed log on the xfs
# or btrfs at byte OFFSET (SIZE bytes) of IMAGE, as a crash would, and prove it.
#
# Run by fixtures.sh's dirty_log, as real root, in a mount namespace of its own
# (unshare --mount --propagation private): every mount made here is invisible
# to the host and goes with the namespace, and every loop device is mount(8)'s
# autoclear one, which goes with its mount — so nothing outlives this script,
# however it ends. Only the kernel writes logs, hence the mount.
#
# The filesystem holds usr/lib/log-marker = "not replayed" (log_marker_root).
# Afterwards its log, and only its log, says the marker is "REPLAYED!!!!":
#   xfs    a new file with the new contents is written, fsynced and renamed over
#          the marker, the rename fsynced (xfs logs the rename; the new file's
#          data is written in place, where nothing leads to it without the log),
#          then the filesystem is shut down without flushing the log
#          (`xfs_io -x -c shutdown`: as if the power went), then unmounted.
#   btrfs  mounted with commit=300 so that no transaction commits; the marker's
#          13 bytes are overwritten in place and fsynced, which writes the log
#          tree (btrfs copies on write: the committed tree still points to the
#          old bytes); the device's bytes are copied while it is still mounted
#          (unmounting would commit), then written back over the partition.
#          A rename would not do here: btrfs commits the whole transaction for it.
# Then, each on a copy of the partition, the proof (any failure fails the build):
#   dirty  xfs: xfs_repair stops at the dirty log, exit status 2 ("unable to
#          proceed due to a dirty log", xfs_repair(8)); btrfs: the superblock's
#          log_root is not 0 (btrfs inspect-internal dump-super), and
#          `btrfs check --readonly` finds the copy consistent (not torn).
#   views  mounted read-only without replay (xfs norecovery, btrfs
#          rescue=nologreplay): the marker reads "not replayed"; mounted
#          writable: the kernel replays the log and it reads "REPLAYED!!!!".
set -euo pipefail
export LC_ALL=C

die() { echo "dirty-log: $*" >&2; exit 1; }

(($# == 5)) || die "usage: dirty-log.sh xfs|btrfs IMAGE OFFSET SIZE WORKDIR"
fs=$1 img=$2 offset=$3 size=$4 work=$5
case $fs in xfs | btrfs) ;; *) die "no dirty log for $fs (xfs or btrfs)" ;; esac
# In the host's mount namespace, the mounts below would be the host's.
[[ $(readlink /proc/self/ns/mnt) != "$(readlink /proc/1/ns/mnt)" ]] ||
	die "not in a mount namespace of its own (run under unshare --mount)"

marker=usr/lib/log-marker
mnt=$work/mnt
mkdir -p "$mnt"

# mount_part FILE OFFSET SIZE OPTIONS: mount a filesystem of FILE on $mnt from
# an autoclear loop device (mount -o loop)
mount_part() {
	mount -t "$fs" -o "loop,offset=$2,sizelimit=$3${4:+,$4}" "$1" "$mnt"
}

# ---- the crash -------------------------------------------------------------
case $fs in
xfs)
	mount_part "$img" "$offset" "$size" ""
	# What the mount itself logged is committed first: the log then holds the rename.
	sync -f "$mnt"
	printf 'REPLAYED!!!!\n' >"$mnt/$marker.new"
	sync "$mnt/$marker.new"
	mv -T "$mnt/$marker.new" "$mnt/$marker"
	sync "$mnt/$marker" "$mnt/${marker%/*}"
	xfs_io -x -c shutdown "$mnt"
	umount "$mnt"
	;;
btrfs)
	mount_part "$img" "$offset" "$size" commit=300
	dev=$(findmnt -n -o SOURCE --mountpoint "$mnt")
	[[ $dev == /dev/loop* ]] || die "the btrfs is mounted from '$dev', not a loop device"
	sync -f "$mnt" # commits what the mount did: the log tree then holds only the marker
	printf 'REPLAYED!!!!\n' | dd of="$mnt/$marker" conv=notrunc,fsync status=none
	# O_DIRECT: the device's bytes, not what the block device's page cache remembers
	dd if="$dev" of="$work/crashed.fs" bs=1M iflag=direct status=none
	umount "$mnt"
	dd if="$work/crashed.fs" of="$img" bs=1M seek="$offset" oflag=seek_bytes conv=notrunc,fsync status=none
	rm -f "$work/crashed.fs"
	;;
esac

# ---- the proof -------------------------------------------------------------
# copy: a private copy of the partition as it is now in $img
copy() {
	dd if="$img" of="$work/check.fs" bs=1M skip="$offset" count="$size" \
		iflag=skip_bytes,count_bytes status=none
}

copy
case $fs in
xfs)
	rc=0
	xfs_repair "$work/check.fs" >"$work/xfs_repair.log" 2>&1 || rc=$?
	((rc == 2)) || { cat "$work/xfs_repair.log" >&2; die "xfs_repair exited $rc, not 2: the log is not dirty"; }
	echo "dirty: xfs_repair stops at the dirty log (exit status 2)"
	;;
btrfs)
	log_root=$(btrfs inspect-internal dump-super "$work/check.fs" | awk '$1 == "log_root" { print $2 }')
	[[ $log_root =~ ^[1-9][0-9]*$ ]] || die "log_root is '$log_root', not a log tree: the fsync committed"
	btrfs check --readonly "$work/check.fs" >"$work/btrfs-check.log" 2>&1 ||
		{ cat "$work/btrfs-check.log" >&2; die "btrfs check: the copy is not consistent"; }
	echo "dirty: btrfs log_root $log_root"
	;;
esac

# read_marker OPTIONS: the marker as a mount of a fresh copy with OPTIONS shows it
read_marker() {
	local text
	copy
	mount_part "$work/check.fs" 0 "$size" "$1"
	text=$(<"$mnt/$marker")
	umount "$mnt"
	echo "$text"
}

case $fs in
xfs) noreplay=ro,norecovery ;;
btrfs) noreplay=ro,rescue=nologreplay ;;
esac
seen=$(read_marker "$noreplay")
[[ $seen == "not replayed" ]] || die "mounted $noreplay, the marker reads '$seen', not 'not replayed'"
seen=$(read_marker rw)
[[ $seen == "REPLAYED!!!!" ]] || die "mounted writable (the log replayed), the marker reads '$seen', not 'REPLAYED!!!!'"
echo "views: $noreplay reads 'not replayed'; rw replays the log and reads 'REPLAYED!!!!'"
rm -f "$work/check.fs"
