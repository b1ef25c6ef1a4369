"""Reads the config that an offline wandb run recorded, from its run-<id>.wandb file (wandb ships no reader for it).

The file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version), then 32 KiB blocks of chunks, each
a 7-byte header (crc32 4, length 2, type 1: full, first, middle, last) and its bytes; a full record is a
`wandb.proto.wandb_internal_pb2.Record`."""
import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER, CHUNK = 32 * 1024, 7, 7


def records(path: Path):
    data, pos, pending = Path(path).read_bytes(), HEADER, b""
    assert data[:4] == b":W&B", path
    while pos + CHUNK <= len(data):
        if BLOCK - pos % BLOCK < CHUNK:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + CHUNK])
        pending += data[pos + CHUNK:pos + CHUNK + length]
        pos += CHUNK + length
        if kind in (1, 4):  # full or last: a whole record
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""
        elif kind == 0:
            break


def recorded_config(run_dir: Path) -> dict:
    """{key: value} of the config updates in an offline run (nested keys as recorded), and the run's id."""
    config, run_id = {}, None
    for record in records(run_dir):
        kind = record.WhichOneof("record_type")
        updates = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        run_id = record.run.run_id if kind == "run" else run_id
        for item in updates:
            key = item.key or ".".join(item.nested_key)
            config[key] = json.loads(item.value_json)
    return {"config": config, "id": run_id}
