#!/usr/bin/python3
"""Read and deliberately damage GPT partition tables in raw image files.

Used by tools/build-fixtures to derive malformed test images from valid ones.
Every edit keeps the rest of the table valid: after the edits, the entry-array
CRC and the header CRC of every touched header are recomputed, unless a
`corrupt=` operation says which checksum must be wrong.

Usage:
  gpt-patch.py [--sector-size N] IMAGE --list
      Print the primary table's used entries, one per line:
      "NUMBER START_BYTES SIZE_BYTES TYPE-UUID PART-UUID ATTRS NAME".
  gpt-patch.py [--sector-size N] IMAGE OPERATION...
      Apply the operations in order, then fix checksums and write.

Operations ([SCOPE:] is "primary:", "backup:" or nothing for both headers):
  [SCOPE:]header.FIELD=EXPR      FIELD: my_lba alternate_lba first_usable_lba
                                 last_usable_lba entries_lba num_entries
                                 entry_size disk_guid revision header_size
                                 (changing entries_lba moves the entry array)
  [SCOPE:]entry.N.FIELD=EXPR     N counts from 1; FIELD: type uuid first_lba
                                 last_lba attrs name
  [SCOPE:]corrupt=header_crc     leave that header's CRC wrong
  [SCOPE:]corrupt=entries_crc    leave the entry-array CRC wrong (the header's
                                 own CRC is still valid)
  [SCOPE:]entry_size=N           rewrite the entry array with N-byte entries
                                 (128 times a power of two, as UEFI allows): each
                                 entry's 128 bytes start its N-byte slot, the rest
                                 of the slot is zero; the array keeps its size in
                                 bytes and its place (num_entries becomes
                                 bytes / N), so no usable LBA moves. Fails if a
                                 used entry would no longer fit. Later entry.N
                                 edits address the new layout.

EXPR is an integer expression (+ - * // and parentheses) that may use
`entry.N.first_lba`, `entry.N.last_lba`, `header.FIELD` (values as they were
before any edit, read from the header in scope; primary for "both") and
`sectors` (image size in sectors). For type/uuid/name/disk_guid it is a
literal string; attrs also accepts a list of bit numbers such as "bits:63,60".
"""

import ast
import re
import struct
import sys
import uuid
import zlib

HEADER_FIELDS = {
    # name: (offset, struct format)
    "signature": (0, "8s"),
    "revision": (8, "<I"),
    "header_size": (12, "<I"),
    "header_crc": (16, "<I"),
    "my_lba": (24, "<Q"),
    "alternate_lba": (32, "<Q"),
    "first_usable_lba": (40, "<Q"),
    "last_usable_lba": (48, "<Q"),
    "disk_guid": (56, "16s"),
    "entries_lba": (72, "<Q"),
    "num_entries": (80, "<I"),
    "entry_size": (84, "<I"),
    "entries_crc": (88, "<I"),
}
ENTRY_FIELDS = {
    "type": (0, "16s"),
    "uuid": (16, "16s"),
    "first_lba": (32, "<Q"),
    "last_lba": (40, "<Q"),
    "attrs": (48, "<Q"),
    "name": (56, "72s"),
}
GUID_FIELDS = {"disk_guid", "type", "uuid"}
MAX_ARRAY = 64 << 20  # never checksum more than this


def die(msg):
    sys.stderr.write("gpt-patch: %s\n" % msg)
    sys.exit(1)


def crc32(data):
    return zlib.crc32(data) & 0xFFFFFFFF


class Header:
    def __init__(self, f, lba, sector_size, which):
        self.which = which
        self.f = f
        self.ss = sector_size
        self.lba = lba
        f.seek(lba * sector_size)
        self.raw = bytearray(f.read(sector_size))
        if len(self.raw) < 92 or self.raw[0:8] != b"EFI PART":
            die("no GPT %s header at LBA %d" % (which, lba))
        self.orig = {k: self.get(k) for k in HEADER_FIELDS}
        self.array_size = self.orig["num_entries"] * self.orig["entry_size"]
        if self.array_size > MAX_ARRAY:
            die("%s header: entry array too large to load" % which)
        f.seek(self.orig["entries_lba"] * sector_size)
        self.entries = bytearray(f.read(self.array_size))
        self.orig_entries = bytes(self.entries)
        self.esize = self.orig["entry_size"]  # the layout entry_put writes: relayout changes it
        self.corrupt = set()
        self.touched = False

    def get(self, name):
        off, fmt = HEADER_FIELDS[name]
        return struct.unpack_from(fmt, self.raw, off)[0]

    def put(self, name, value):
        off, fmt = HEADER_FIELDS[name]
        struct.pack_into(fmt, self.raw, off, value)
        self.touched = True

    def entry_get(self, n, name, entries=None):
        entries = self.orig_entries if entries is None else entries
        esize = self.orig["entry_size"]
        off, fmt = ENTRY_FIELDS[name]
        base = (n - 1) * esize
        if n < 1 or base + esize > len(entries):
            die("entry %d does not exist in the %s table" % (n, self.which))
        return struct.unpack_from(fmt, entries, base + off)[0]

    def entry_put(self, n, name, value):
        esize = self.esize
        off, fmt = ENTRY_FIELDS[name]
        base = (n - 1) * esize
        if n < 1 or base + esize > len(self.entries):
            die("entry %d does not exist in the %s table" % (n, self.which))
        struct.pack_into(fmt, self.entries, base + off, value)
        self.touched = True

    def relayout(self, size):
        if size < 128 or size % 128 or (size // 128) & (size // 128 - 1):
            die("entry_size=%d: not 128 times a power of two" % size)
        old = self.esize
        count = len(self.entries) // size
        new = bytearray(len(self.entries))
        for n in range(len(self.entries) // old):
            entry = self.entries[n * old:n * old + 128]
            if entry[:16] == b"\0" * 16:
                continue
            if n >= count:
                die("entry_size=%d: entry %d of the %s table would not fit in %d entries"
                    % (size, n + 1, self.which, count))
            new[n * size:n * size + 128] = entry
        self.entries = new
        self.esize = size
        self.put("entry_size", size)
        self.put("num_entries", count)


def guid_bytes(text):
    try:
        return uuid.UUID(text).bytes_le
    except ValueError:
        die("not a GUID: %r" % text)


def guid_str(raw):
    return str(uuid.UUID(bytes_le=bytes(raw)))


def safe_eval(expr):
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b,
                   ast.Mult: lambda: a * b, ast.FloorDiv: lambda: a // b}
            for k, fn in ops.items():
                if isinstance(node.op, k):
                    return fn()
        die("unsupported expression: %r" % expr)
    return ev(ast.parse(expr, mode="eval"))


def int_value(expr, hdr, sectors):
    def entry_ref(m):
        return str(hdr.entry_get(int(m.group(1)), m.group(2)))

    def header_ref(m):
        if m.group(1) not in hdr.orig or m.group(1) in GUID_FIELDS | {"signature"}:
            die("unknown header field in expression: %s" % m.group(1))
        return str(hdr.orig[m.group(1)])

    s = re.sub(r"entry\.(\d+)\.(first_lba|last_lba|attrs)", entry_ref, expr)
    s = re.sub(r"header\.(\w+)", header_ref, s)
    s = re.sub(r"\bsectors\b", str(sectors), s)
    return safe_eval(s)


def do_list(f, ss):
    hdr = Header(f, 1, ss, "primary")
    for n in range(1, hdr.orig["num_entries"] + 1):
        t = hdr.entry_get(n, "type")
        if t == b"\0" * 16:
            continue
        first = hdr.entry_get(n, "first_lba")
        last = hdr.entry_get(n, "last_lba")
        name = hdr.entry_get(n, "name").decode("utf-16-le").rstrip("\0")
        print(n, first * ss, (last - first + 1) * ss, guid_str(t),
              guid_str(hdr.entry_get(n, "uuid")),
              "0x%016x" % hdr.entry_get(n, "attrs"), name)


def main(argv):
    ss = 512
    args = list(argv)
    if len(args) >= 2 and args[0] == "--sector-size":
        ss = int(args[1])
        args = args[2:]
    if not args:
        die("usage: gpt-patch.py [--sector-size N] IMAGE (--list | OPERATION...)")
    path, ops = args[0], args[1:]
    with open(path, "r+b") as f:
        f.seek(0, 2)
        sectors = f.tell() // ss
        if ops == ["--list"]:
            return do_list(f, ss)
        primary = Header(f, 1, ss, "primary")
        backup_lba = primary.orig["alternate_lba"]
        if backup_lba >= sectors:
            backup_lba = sectors - 1
        backup = Header(f, backup_lba, ss, "backup")
        for op in ops:
            scope, _, rest = op.partition(":") if re.match(r"^(primary|backup):", op) else ("", "", op)
            targets = {"primary": [primary], "backup": [backup], "": [primary, backup]}[scope]
            if "=" not in rest:
                die("bad operation: %r" % op)
            lhs, rhs = (x.strip() for x in rest.split("=", 1))
            for hdr in targets:
                if lhs == "entry_size":
                    hdr.relayout(int_value(rhs, hdr, sectors))
                    continue
                if lhs == "corrupt":
                    if rhs not in ("header_crc", "entries_crc"):
                        die("bad corrupt= value: %r" % rhs)
                    hdr.corrupt.add(rhs)
                    hdr.touched = True
                    continue
                m = re.fullmatch(r"header\.(\w+)", lhs)
                if m:
                    field = m.group(1)
                    if field not in HEADER_FIELDS or field in ("signature", "header_crc", "entries_crc"):
                        die("cannot set header field %r" % field)
                    val = guid_bytes(rhs) if field in GUID_FIELDS else int_value(rhs, hdr, sectors)
                    hdr.put(field, val)
                    continue
                m = re.fullmatch(r"entry\.(\d+)\.(\w+)", lhs)
                if m:
                    n, field = int(m.group(1)), m.group(2)
                    if field not in ENTRY_FIELDS:
                        die("unknown entry field %r" % field)
                    if field in GUID_FIELDS:
                        val = guid_bytes(rhs)
                    elif field == "name":
                        val = rhs.encode("utf-16-le")
                        if len(val) > 72:
                            die("name too long: %r" % rhs)
                    elif field == "attrs" and rhs.startswith("bits:"):
                        val = sum(1 << int(b) for b in rhs[5:].split(",") if b)
                    else:
                        val = int_value(rhs, hdr, sectors)
                    hdr.entry_put(n, field, val)
                    continue
                die("bad operation: %r" % op)

        for hdr in (primary, backup):
            if not hdr.touched:
                continue
            # entry array goes where the header now says (moves it if entries_lba changed)
            f.seek(hdr.get("entries_lba") * ss)
            f.write(hdr.entries)
            f.flush()
            size = hdr.get("num_entries") * hdr.get("entry_size")
            if size <= MAX_ARRAY and hdr.get("entries_lba") * ss + size <= sectors * ss:
                f.seek(hdr.get("entries_lba") * ss)
                ecrc = crc32(f.read(size))
            else:
                ecrc = hdr.orig["entries_crc"]  # cannot be made valid; leave as it was
            if "entries_crc" in hdr.corrupt:
                ecrc ^= 0xFFFFFFFF
            struct.pack_into("<I", hdr.raw, 88, ecrc)
            hsize = hdr.get("header_size")
            struct.pack_into("<I", hdr.raw, 16, 0)
            hcrc = crc32(bytes(hdr.raw[:hsize]))
            if "header_crc" in hdr.corrupt:
                hcrc ^= 0xFFFFFFFF
            struct.pack_into("<I", hdr.raw, 16, hcrc)
            f.seek(hdr.lba * ss)
            f.write(hdr.raw)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) or 0)
