# shellcheck shell=bash
# The vocabulary of fixture recipes (fixtures/images/NAME.sh). Sourced by
# tools/build-fixtures, which sets, before sourcing a recipe in a subshell:
#   FIXTURE  the fixture's name           IMG   the temporary image file to write
#   OUT      the output directory          WORK  a scratch directory (removed after)
#   LIBDIR   this directory                SOURCE_DATE_EPOCH  fixed timestamp
#
# Recipe commands
#   disk gpt|dos SIZE [id=DISK-UUID|0xDISKID] [sector=512|4096]
#       Start a partitioned image of SIZE bytes (suffix K, M, G = KiB, MiB, GiB).
#   part TYPE SIZE [KEY=VALUE...]
#       Add the next partition (numbered from 1, in order). TYPE is a GPT type
#       name (see _gpt_type) or UUID, or a DOS type in hex (83, 82, ...).
#       Keys: start=BYTES  uuid=PART-UUID  label=PARTLABEL  attrs=BITS (GPT,
#       e.g. 63 or 59,60)  bootable=1 (DOS)  fs=ext4|btrfs|xfs|squashfs|erofs|
#       swap|random|none  fsuuid=  fslabel=  tree="FUNCTION [ARG...]" (called
#       as FUNCTION DIR ARG...; the filesystem is populated from DIR)
#       seed=N (fs=random)
#   bare FS SIZE [fsuuid= fslabel= tree=]    the whole image is one filesystem
#   zeros BYTES                              an image of BYTES zero bytes
#   random_image BYTES seed=N                deterministic pseudo-random bytes
#   from NAME        start from a copy of fixture NAME's image. Must be written
#                    at the start of a line: the builder reads it to know the
#                    dependency (the dependency's cache key is part of ours).
#   gpt_patch OP...  edit the GPT (tools/lib/gpt-patch.py; CRCs are fixed up)
#   truncate_image PERCENT%|BYTES            cut the image (rounded down to 512)
#   zero_bytes OFFSET LENGTH                 overwrite LENGTH bytes of the image
#                    from byte OFFSET with zeros (to damage a filesystem)
#   ext4_over_gpt SIZE fsuuid= fslabel=      put a small, complete ext4 (1 KiB
#                    blocks) over the first SIZE bytes of a GPT disk; the primary
#                    entry array is moved to LBA SIZE/512 so both stay valid
#   debugfs_part [--no-fsck] N CMD...        run debugfs -w commands (one per
#                    argument) on the ext2/3/4 filesystem of GPT partition N in
#                    place: device nodes, FIFOs, journal transactions that no
#                    unprivileged builder could make with mkfs -d. Any error fails
#                    the build; so does e2fsck -fn afterwards (unless --no-fsck)
#   mounts FS        this recipe mounts FS (dirty_log): it needs real root, loop
#                    devices and the kernel's FS, and the builder skips it (and
#                    says why) where it has not got them. Must be written at the
#                    start of a line, as `from`: the builder reads it.
#   dirty_log N      leave an unreplayed log on GPT partition N's xfs or btrfs,
#                    as a crash would (tools/lib/dirty-log.sh: the tree must be
#                    log_marker_root's), and prove it; needs `mounts FS`
# Partition layouts are written lazily: the first command that needs the bytes
# on disk (or the end of the recipe) writes table and filesystems.

_disk_label=""
_disk_size=0
_disk_id=""
_sector=512
_nparts=0
declare -a _p_type _p_size _p_start _p_uuid _p_label _p_attrs _p_boot \
	_p_fs _p_fsuuid _p_fslabel _p_tree _p_seed
declare -a _mounts=()

die() { echo "build-fixtures: ${FIXTURE:+$FIXTURE: }$*" >&2; exit 1; }

# need COMMAND DEBIAN-PACKAGE
need() {
	command -v "$1" >/dev/null 2>&1 ||
		die "'$1' not found; install the Debian package '$2' (apt-get install $2)"
}

# _bytes 12M -> 12582912
_bytes() {
	local v=$1 n
	case $v in
	*[Kk]) n=$((${v%?} * 1024)) ;;
	*[Mm]) n=$((${v%?} * 1024 * 1024)) ;;
	*[Gg]) n=$((${v%?} * 1024 * 1024 * 1024)) ;;
	*[!0-9]* | "") die "bad size '$v'" ;;
	*) n=$v ;;
	esac
	echo "$n"
}

_gpt_type() {
	case $1 in
	root-x86-64) echo 4f68bce3-e8cd-4db1-96e7-fbcaf984b709 ;;
	usr-x86-64) echo 8484680c-9521-48c6-9c11-b0720656f69e ;;
	root-arm64) echo b921b045-1df0-41c3-af44-4c6f280d3fae ;;
	usr-arm64) echo b0e01050-ee5f-4390-949a-9101b17104e9 ;;
	home) echo 933ac7e1-2eb4-4f13-b844-0e14e2aef915 ;;
	srv) echo 3b8f8425-20e0-4f3b-907f-1a25a76f98e8 ;;
	var) echo 4d21b016-b534-45c2-a9fb-5c16e091fd2d ;;
	tmp) echo 7ec6f557-3bc5-4aca-b293-16ef5df639d1 ;;
	swap) echo 0657fd6d-a4ab-43c4-84e5-0933c84b4f4f ;;
	esp) echo c12a7328-f81f-11d2-ba4b-00a0c93ec93b ;;
	xbootldr) echo bc13c2ff-59e6-4262-a352-b275fd6f7172 ;;
	linux-generic) echo 0fc63daf-8483-4772-8e79-3d69d8477de4 ;;
	????????-????-????-????-????????????) echo "$1" ;;
	*) die "unknown GPT partition type '$1'" ;;
	esac
}

# GPT attribute bits -> sfdisk syntax
_gpt_attrs() {
	local out="" b IFS=,
	for b in $1; do
		case $b in
		0) out+=${out:+,}RequiredPartition ;;
		1) out+=${out:+,}NoBlockIOProtocol ;;
		2) out+=${out:+,}LegacyBIOSBootable ;;
		4[8-9] | 5[0-9] | 6[0-3]) out+=${out:+,}GUID:$b ;;
		*) die "attribute bit '$b' cannot be set with sfdisk (use 0-2 or 48-63)" ;;
		esac
	done
	echo "$out"
}

disk() {
	[[ $# -ge 2 ]] || die "usage: disk gpt|dos SIZE [id=...] [sector=...]"
	_disk_label=$1
	_disk_size=$(_bytes "$2")
	shift 2
	local kv
	for kv in "$@"; do
		case $kv in
		id=*) _disk_id=${kv#id=} ;;
		sector=*) _sector=${kv#sector=} ;;
		*) die "disk: unknown argument '$kv'" ;;
		esac
	done
	case $_disk_label in gpt | dos) ;; *) die "disk: label must be gpt or dos" ;; esac
	case $_sector in 512 | 4096) ;; *) die "disk: sector must be 512 or 4096" ;; esac
	[[ $_sector == 512 || $_disk_label == gpt ]] || die "disk: 4096-byte sectors only with gpt"
}

part() {
	[[ -n $_disk_label ]] || die "part before disk"
	[[ $# -ge 2 ]] || die "usage: part TYPE SIZE [KEY=VALUE...]"
	local i=$((_nparts + 1)) kv
	_p_type[i]=$1
	_p_size[i]=$(_bytes "$2")
	_p_start[i]="" _p_uuid[i]="" _p_label[i]="" _p_attrs[i]="" _p_boot[i]=""
	_p_fs[i]=none _p_fsuuid[i]="" _p_fslabel[i]="" _p_tree[i]="" _p_seed[i]=""
	shift 2
	for kv in "$@"; do
		case $kv in
		start=*) _p_start[i]=$(_bytes "${kv#*=}") ;;
		uuid=*) _p_uuid[i]=${kv#*=} ;;
		label=*) _p_label[i]=${kv#*=} ;;
		attrs=*) _p_attrs[i]=${kv#*=} ;;
		bootable=1) _p_boot[i]=1 ;;
		fs=*) _p_fs[i]=${kv#*=} ;;
		fsuuid=*) _p_fsuuid[i]=${kv#*=} ;;
		fslabel=*) _p_fslabel[i]=${kv#*=} ;;
		tree=*) _p_tree[i]=${kv#*=} ;;
		seed=*) _p_seed[i]=${kv#*=} ;;
		*) die "part $i: unknown argument '$kv'" ;;
		esac
	done
	_nparts=$i
}

# The sfdisk script for the pending layout.
_table_script() {
	local i line
	echo "label: $_disk_label"
	[[ -n $_disk_id ]] && echo "label-id: $_disk_id"
	[[ $_disk_label == gpt ]] && echo "first-lba: $((1048576 / _sector))"
	for ((i = 1; i <= _nparts; i++)); do
		line="size=$((_p_size[i] / _sector))"
		[[ -n ${_p_start[i]} ]] && line="start=$((_p_start[i] / _sector)), $line"
		if [[ $_disk_label == gpt ]]; then
			line+=", type=$(_gpt_type "${_p_type[i]}")"
			[[ -n ${_p_uuid[i]} ]] && line+=", uuid=${_p_uuid[i]}"
			[[ -n ${_p_label[i]} ]] && line+=", name=\"${_p_label[i]}\""
			[[ -n ${_p_attrs[i]} ]] && line+=", attrs=\"$(_gpt_attrs "${_p_attrs[i]}")\""
		else
			line+=", type=${_p_type[i]}"
			[[ -n ${_p_boot[i]} ]] && line+=", bootable"
			[[ -n ${_p_uuid[i]}${_p_label[i]}${_p_attrs[i]} ]] &&
				die "part $i: uuid/label/attrs do not exist on a DOS table"
		fi
		echo "$line"
	done
}

# Prints "NUMBER START_BYTES SIZE_BYTES" for each partition of $IMG.
_geometry() {
	if [[ $_disk_label == gpt ]]; then
		python3 "$LIBDIR/gpt-patch.py" --sector-size "$_sector" "$IMG" --list | cut -d' ' -f1-3
	else
		sfdisk -J "$IMG" | python3 -c 'import json, sys
t = json.load(sys.stdin)["partitiontable"]
for n, p in enumerate(t["partitions"], 1):
    print(n, p["start"] * t["sectorsize"], p["size"] * t["sectorsize"])'
	fi
}

# _populate_tree SPEC -> prints the directory (empty if no SPEC)
_populate_tree() {
	local spec=$1 dir words
	[[ -n $spec ]] || return 0
	dir=$(mktemp -d "$WORK/tree.XXXXXX")
	chmod 0755 "$dir" # becomes the filesystem's root directory
	read -ra words <<<"$spec"
	declare -F "${words[0]}" >/dev/null || die "tree function '${words[0]}' is not defined"
	"${words[0]}" "$dir" "${words[@]:1}"
	# fixed timestamps on everything, symlinks included
	find "$dir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	echo "$dir"
}

# xfs prototype file (mkfs.xfs -p) for directory $1 (at $3 in the filesystem),
# everything owned by root. A protofile has no sticky bit: sticky directories
# are listed in $WORK/xfs.sticky ("PATH MODE") for _mkfs to set with xfs_db.
_xfs_proto_dir() {
	local dir=$1 indent=$2 path=${3:-} e name mode
	for e in "$dir"/* "$dir"/.[!.]*; do
		[[ -e $e || -L $e ]] || continue
		name=${e##*/}
		[[ $name == *[[:space:]]* ]] && die "xfs protofile: file names with blanks are not supported: $e"
		mode=$(stat -c %a "$e")
		if ((${#mode} > 3)); then
			[[ $mode == 1??? && -d $e && ! -L $e ]] || die "xfs protofile: setuid/setgid not supported here: $e"
			echo "$path/$name $mode" >>"$WORK/xfs.sticky"
			mode=${mode#1}
		fi
		if [[ -L $e ]]; then
			echo "$indent$name l--777 0 0 $(readlink "$e")"
		elif [[ -d $e ]]; then
			echo "$indent$name d--$mode 0 0"
			_xfs_proto_dir "$e" "$indent " "$path/$name"
			echo "$indent\$"
		elif [[ -f $e ]]; then
			echo "$indent$name ---$mode 0 0 $e"
		else
			die "xfs protofile: unsupported file type: $e"
		fi
	done
}

_empty_dir() {
	local d
	d=$(mktemp -d "$WORK/empty.XXXXXX")
	chmod 0755 "$d"
	echo "$d"
}

# _mkfs FS FILE SIZE FSUUID FSLABEL TREE-DIR SEED: write a filesystem image file
_mkfs() {
	local fs=$1 f=$2 size=$3 uuid=$4 label=$5 tree=$6 seed=$7
	rm -f "$f"
	case $fs in
	ext2 | ext4)
		need mkfs.ext4 e2fsprogs
		truncate -s "$size" "$f"
		local eopts=root_owner=0:0
		[[ -n $uuid ]] && eopts+=,hash_seed=$uuid
		E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -t "$fs" -b 4096 -I 256 -E "$eopts" \
			${uuid:+-U "$uuid"} ${label:+-L "$label"} ${tree:+-d "$tree"} "$f"
		;;
	btrfs)
		need mkfs.btrfs btrfs-progs
		# mixed block groups (-M): the only way to get a btrfs this small (16 MiB works)
		truncate -s "$size" "$f"
		mkfs.btrfs -q -f -M ${uuid:+-U "$uuid"} ${label:+-L "$label"} ${tree:+--rootdir "$tree"} "$f" >/dev/null
		[[ $(stat -c %s "$f") -le $size ]] || die "btrfs grew beyond its partition"
		;;
	xfs)
		need mkfs.xfs xfsprogs
		truncate -s "$size" "$f"
		: >"$WORK/xfs.sticky"
		{
			echo /dev/null
			echo 0 0
			echo "d--755 0 0"
			[[ -n $tree ]] && _xfs_proto_dir "$tree" " "
			echo "\$"
			echo "\$"
		} >"$WORK/xfs.proto"
		# mkfs.xfs refuses filesystems < 300 MB unless it believes it is run by
		# fstests, which needs all three variables set.
		TEST_DIR=/nonexistent TEST_DEV=/nonexistent QA_CHECK_FS=1 \
			mkfs.xfs -q -f ${uuid:+-m uuid="$uuid"} ${label:+-L "$label"} -p "$WORK/xfs.proto" "$f"
		local path mode
		while read -r path mode; do
			xfs_db -x -c "path $path" -c "write core.mode 04$mode" "$f" >/dev/null
			[[ $(xfs_db -r -c "path $path" -c "print core.mode" "$f") == "core.mode = 04$mode" ]] ||
				die "xfs: cannot make $path mode $mode with xfs_db"
		done <"$WORK/xfs.sticky"
		;;
	squashfs)
		need mksquashfs squashfs-tools
		[[ -z $uuid && -z $label ]] || die "squashfs has no UUID or label"
		mksquashfs "${tree:-$(_empty_dir)}" "$f" -noappend -quiet -no-progress \
			-comp gzip -no-xattrs -all-root >/dev/null # times: SOURCE_DATE_EPOCH
		;;
	erofs)
		need mkfs.erofs erofs-utils
		[[ -z $label ]] || die "mkfs.erofs (erofs-utils 1.5) cannot set a label"
		mkfs.erofs --quiet ${uuid:+-U "$uuid"} -T "$SOURCE_DATE_EPOCH" --all-root "$f" \
			"${tree:-$(_empty_dir)}"
		;;
	swap)
		need mkswap util-linux
		truncate -s "$size" "$f"
		chmod 600 "$f"
		mkswap -q ${uuid:+-U "$uuid"} ${label:+-L "$label"} "$f"
		;;
	random)
		[[ -n $seed ]] || die "fs=random needs seed="
		_random_bytes "$seed" "$size" >"$f"
		;;
	*) die "unknown filesystem type '$fs'" ;;
	esac
	[[ $(stat -c %s "$f") -le $size ]] || die "$fs filesystem ($(stat -c %s "$f") bytes) does not fit in $size bytes"
}

# _random_bytes SEED COUNT: deterministic bytes (SHAKE-256 of the seed)
_random_bytes() {
	need python3 python3
	python3 -c 'import hashlib, sys
sys.stdout.buffer.write(hashlib.shake_256(b"imgboot-fixture-seed-" + sys.argv[1].encode()).digest(int(sys.argv[2])))' "$1" "$2"
}

# _put FILE OFFSET: write FILE into $IMG at byte OFFSET, keeping zeros as holes
_put() {
	dd if="$1" of="$IMG" bs=64K seek="$2" oflag=seek_bytes conv=notrunc,sparse status=none
}

# Write the pending partition layout (if any) to $IMG.
_flush() {
	[[ -n $_disk_label ]] || return 0
	local i n start size script tree f
	need sfdisk fdisk
	need python3 python3
	rm -f "$IMG"
	truncate -s "$_disk_size" "$IMG"
	script=$(_table_script)
	if [[ $_sector == 512 ]]; then
		sfdisk -q --no-reread --no-tell-kernel --wipe never --wipe-partitions never "$IMG" <<<"$script" >/dev/null
	else
		# sfdisk 2.38 has no --sector-size; fdisk has -b, and its "I" command
		# reads an sfdisk script.
		printf '%s\n' "$script" >"$WORK/table.sfdisk"
		printf 'I\n%s\nw\n' "$WORK/table.sfdisk" | fdisk -b "$_sector" -w never -W never "$IMG" >"$WORK/fdisk.log" 2>&1 ||
			{ cat "$WORK/fdisk.log" >&2; die "fdisk failed"; }
	fi
	declare -A pstart psize
	while read -r n start size; do
		pstart[$n]=$start psize[$n]=$size
	done < <(_geometry)
	for ((i = 1; i <= _nparts; i++)); do
		[[ -n ${pstart[$i]:-} ]] || die "partition $i missing after writing the table"
		[[ ${psize[$i]} == "${_p_size[i]}" ]] || die "partition $i: size ${psize[$i]} != ${_p_size[i]}"
		[[ ${_p_fs[i]} == none ]] && continue
		tree=$(_populate_tree "${_p_tree[i]}")
		f="$WORK/part$i.fs"
		_mkfs "${_p_fs[i]}" "$f" "${psize[$i]}" "${_p_fsuuid[i]}" "${_p_fslabel[i]}" "$tree" "${_p_seed[i]}"
		_put "$f" "${pstart[$i]}"
		rm -rf "$f" "$tree"
	done
	_disk_label=""
}

bare() {
	[[ $# -ge 2 ]] || die "usage: bare FS SIZE [KEY=VALUE...]"
	local fs=$1 size uuid="" label="" treespec="" kv tree
	size=$(_bytes "$2")
	shift 2
	for kv in "$@"; do
		case $kv in
		fsuuid=*) uuid=${kv#*=} ;;
		fslabel=*) label=${kv#*=} ;;
		tree=*) treespec=${kv#*=} ;;
		*) die "bare: unknown argument '$kv'" ;;
		esac
	done
	tree=$(_populate_tree "$treespec")
	_mkfs "$fs" "$WORK/bare.fs" "$size" "$uuid" "$label" "$tree" ""
	rm -f "$IMG"
	truncate -s "$size" "$IMG"
	_put "$WORK/bare.fs" 0
}

zeros() {
	head -c "$(_bytes "$1")" /dev/zero >"$IMG"
}

random_image() {
	local size seed=""
	size=$(_bytes "$1")
	[[ ${2:-} == seed=* ]] && seed=${2#seed=}
	[[ -n $seed ]] || die "usage: random_image BYTES seed=N"
	_random_bytes "$seed" "$size" >"$IMG"
}

from() {
	[[ -f $OUT/$1.raw ]] || die "from $1: $OUT/$1.raw was not built"
	rm -f "$IMG"
	cp --sparse=always "$OUT/$1.raw" "$IMG"
}

gpt_patch() {
	_flush
	need python3 python3
	python3 "$LIBDIR/gpt-patch.py" --sector-size "$_sector" "$IMG" "$@"
}

truncate_image() {
	_flush
	local size
	size=$(stat -c %s "$IMG")
	case $1 in
	*%) size=$((size * ${1%\%} / 100)) ;;
	*) size=$(_bytes "$1") ;;
	esac
	truncate -s $((size / 512 * 512)) "$IMG"
}

zero_bytes() {
	[[ $# -eq 2 ]] || die "usage: zero_bytes OFFSET LENGTH"
	_flush
	local offset length
	offset=$(_bytes "$1")
	length=$(_bytes "$2")
	((offset + length <= $(stat -c %s "$IMG"))) || die "zero_bytes: $offset + $length is past the end of the image"
	dd if=/dev/zero of="$IMG" bs=64K count="$length" iflag=count_bytes seek="$offset" oflag=seek_bytes \
		conv=notrunc status=none
}

ext4_over_gpt() {
	local size uuid="" label="" kv
	size=$(_bytes "$1")
	shift
	for kv in "$@"; do
		case $kv in
		fsuuid=*) uuid=${kv#*=} ;;
		fslabel=*) label=${kv#*=} ;;
		*) die "ext4_over_gpt: unknown argument '$kv'" ;;
		esac
	done
	[[ $_sector == 512 ]] || die "ext4_over_gpt: 512-byte sectors only"
	((size % 1024 == 0 && size / 512 + 32 <= 2048)) || die "ext4_over_gpt: SIZE must be a multiple of 1K and <= 1008K"
	_flush
	need mkfs.ext4 e2fsprogs
	# move the primary entry array out of the ext4's way (it must stay below the
	# first usable LBA, which sfdisk put at 1 MiB)
	python3 "$LIBDIR/gpt-patch.py" "$IMG" "primary:header.entries_lba=$((size / 512))"
	truncate -s "$size" "$WORK/over.fs"
	E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -t ext4 -b 1024 -O ^has_journal,^resize_inode \
		-E "root_owner=0:0${uuid:+,hash_seed=$uuid}" ${uuid:+-U "$uuid"} ${label:+-L "$label"} "$WORK/over.fs"
	# everything but the first KiB (ext4's unused boot block, where the
	# protective MBR and the GPT header live)
	dd if="$WORK/over.fs" of="$IMG" bs=1024 skip=1 seek=1 conv=notrunc status=none
}

debugfs_part() {
	local fsck=1 n offset out
	[[ ${1:-} == --no-fsck ]] && { fsck=0; shift; }
	[[ $# -ge 2 ]] || die "usage: debugfs_part [--no-fsck] N CMD..."
	n=$1
	shift
	_flush
	need debugfs e2fsprogs
	offset=$(python3 "$LIBDIR/gpt-patch.py" --sector-size "$_sector" "$IMG" --list | awk -v n="$n" '$1 == n { print $2 }')
	[[ -n $offset ]] || die "debugfs_part: no partition $n"
	out=$(printf '%s\n' "$@" | debugfs -w -f - "$IMG?offset=$offset" 2>&1 >/dev/null) || die "debugfs failed: $out"
	# debugfs exits 0 whatever its commands do; anything on stderr but its banner is an error
	out=$(grep -v '^debugfs [0-9.]* ([0-9A-Za-z-]*)$' <<<"$out" || true)
	[[ -z $out ]] || die "debugfs on partition $n: $out"
	if ((fsck)); then
		out=$(e2fsck -fn "$IMG?offset=$offset" 2>&1) || die "partition $n is damaged after debugfs: $out"
	fi
}

mounts() {
	[[ $# -eq 1 ]] || die "usage: mounts FS"
	_mounts+=("$1")
}

# _loops_backing FILE...: the loop devices attached to any of FILE
_loops_backing() {
	local f
	for f in "$@"; do
		[[ -e $f ]] && losetup -n -O NAME -j "$f"
	done
	return 0
}

dirty_log() {
	[[ $# -eq 1 ]] || die "usage: dirty_log N"
	local n=$1 fs offset size work rc=0 loops i
	_flush
	fs=${_p_fs[n]:-}
	[[ $fs == xfs || $fs == btrfs ]] || die "dirty_log: partition $n holds '${fs:-nothing}', not xfs or btrfs"
	[[ " ${_mounts[*]} " == *" $fs "* ]] || die "dirty_log: the recipe must say 'mounts $fs' (the builder skips it where it cannot)"
	need unshare util-linux
	need losetup mount
	case $fs in
	xfs) need xfs_io xfsprogs; need xfs_repair xfsprogs ;;
	btrfs) need btrfs btrfs-progs ;;
	esac
	read -r offset size < <(python3 "$LIBDIR/gpt-patch.py" --sector-size "$_sector" "$IMG" --list |
		awk -v n="$n" '$1 == n { print $2, $3 }')
	[[ -n $offset ]] || die "dirty_log: no partition $n"
	work=$(mktemp -d "$WORK/dirty-log.XXXXXX")
	unshare --mount --propagation private -- bash "$LIBDIR/dirty-log.sh" "$fs" "$IMG" "$offset" "$size" "$work" || rc=$?
	# The namespace is gone, and with it every mount of the script's; their loop
	# devices (autoclear) follow within moments. Wait for them, so that the build
	# leaves nothing attached; detach any that stay, and fail.
	for ((i = 0; i < 50; i++)); do
		loops=$(_loops_backing "$IMG" "$work"/*.fs)
		[[ -z $loops ]] && break
		sleep 0.1
	done
	if [[ -n $loops ]]; then
		# shellcheck disable=SC2086 # one device per word
		losetup -d $loops || true
		die "dirty_log: loop devices still attached after the mounts were gone: $loops"
	fi
	((rc == 0)) || die "dirty_log: partition $n ($fs): failed (exit $rc)"
	rm -rf "$work"
}
