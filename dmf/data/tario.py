"""Streaming reader for webdataset .tar shards: (key, {suffix: bytes}) samples from any URL webdataset opens.

Why not the tarfile module: it parses headers in slow Python (half the cost of a sample here), and it
takes a header cut short by a truncated copy for the end of the archive, silently dropping the rest.
This reader checks every header's checksum and every member's length and raises a DataError naming
the shard. It reads the formats tar writers emit for webdataset shards: ustar, GNU long names, pax
path records; directories, links and other special members are skipped.
"""
import re

from webdataset.gopen import gopen

from dmf.data.errors import DataError

BLOCK = 512
_ZERO = bytes(BLOCK)
_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's rule: key = path up to the first dot of the name


def _read(stream, n: int) -> bytes:
    data = stream.read(n)
    while data is not None and len(data) < n:  # pipes and sockets may return short reads
        more = stream.read(n - len(data))
        if not more:
            break
        data += more
    return data or b""


def _octal(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 for sizes >= 8 GiB
        value = int.from_bytes(field[1:], "big")
        return value if field[:1] == b"\x80" else value - (1 << (8 * (len(field) - 1)))
    field = field.rstrip(b"\0 ").lstrip(b" ")
    return int(field, 8) if field else 0


def _pax_path(data: bytes) -> str | None:
    for record in data.split(b"\n"):
        _, _, kv = record.partition(b" ")
        key, _, value = kv.partition(b"=")
        if key == b"path":
            return value.decode()
    return None


def iter_members(stream, url: str):
    """(name, data) for each regular file of a tar stream."""
    long_name = None
    while True:
        header = _read(stream, BLOCK)
        if not header or header == _ZERO:
            return  # end of archive (the trailing zero blocks are optional in practice)
        if len(header) < BLOCK:
            raise DataError(f"{url}: truncated tar (a header cut after {len(header)} bytes)")
        stored = _octal(header[148:156])
        if stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):
            raise DataError(f"{url}: corrupt tar header (bad checksum): not a tar, or damaged")
        size, kind = _octal(header[124:136]), header[156:157]
        data = _read(stream, size)
        if len(data) < size:
            raise DataError(f"{url}: truncated tar (member of {size} bytes cut after {len(data)})")
        _read(stream, -size % BLOCK)
        if kind == b"L":  # GNU: the next member's long name
            long_name = data.rstrip(b"\0").decode()
            continue
        if kind == b"x":  # pax: per-member records
            long_name = _pax_path(data) or long_name
            continue
        if kind not in (b"0", b"\0", b"7"):  # directories, links, global pax headers...
            long_name = None
            continue
        name = header[:100].split(b"\0", 1)[0].decode()
        if header[257:263] == b"ustar\x00" and header[345:500].strip(b"\0"):
            name = header[345:500].split(b"\0", 1)[0].decode() + "/" + name
        yield (long_name or name), data
        long_name = None


def iter_samples(url: str):
    """Group consecutive members by key: yields {"__key__", "__url__", suffix: bytes, ...}."""
    stream = gopen(url, "rb")
    try:
        sample = None
        for name, data in iter_members(stream, url):
            match = _KEY.match(name)
            if match is None or name.rsplit("/", 1)[-1].startswith("__"):
                continue  # no extension, or webdataset metadata
            key, suffix = match.group(1), match.group(2).lower()
            if sample is None or sample["__key__"] != key:
                if sample is not None:
                    yield sample
                sample = {"__key__": key, "__url__": url}
            if suffix in sample:
                raise DataError(f"{url}: sample {key} has two .{suffix} members")
            sample[suffix] = data
        if sample is not None:
            yield sample
    finally:
        stream.close()
