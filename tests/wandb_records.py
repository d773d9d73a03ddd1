"""Read the records of an offline W&B run file (LevelDB log format, as wandb writes it), for tests."""
from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER = 32768, 7


def records(path: Path) -> list[pb.Record]:
    """Every protobuf record in a run-*.wandb file."""
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    out, pos, pending = [], 7, b""
    while pos + HEADER <= len(data):
        left = BLOCK - (pos % BLOCK)
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # full, or last piece of a fragmented record
            rec = pb.Record()
            rec.ParseFromString(pending)
            out.append(rec)
            pending = b""
    return out


def history(path: Path) -> list[dict]:
    """The logged history rows ({key: value}) of an offline run."""
    rows = []
    for r in records(path):
        if r.WhichOneof("record_type") == "history":
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item})
    return rows


def run_info(path: Path) -> pb.RunRecord:
    """The run record: id, name, group, tags, config."""
    for r in records(path):
        if r.WhichOneof("record_type") == "run":
            return r.run
    raise AssertionError("no run record")
