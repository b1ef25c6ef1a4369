"""Resumable progress of one generation run: per-rank state files of completed chunks.

Work is cut into fixed chunks of indices (eval.chunk_size, independent of world size and batch size). Each rank
periodically writes state_a<attempt>_r<rank>.pt = (the chunks it completed in this attempt, the metric states
summed over exactly those chunks), atomically. A resumed run (any world size) skips every chunk recorded in any
file and adds new files; the final merge checks that every chunk appears exactly once, so no index is ever
skipped or counted twice. spec.json pins the settings (including the content hashes of the weights and reference
statistics), so a resume cannot mix two different runs; state files without a spec.json are refused. State files
hold tensors only and are read as data (dmf.models.safe_load), never unpickled as code.
"""
import json
import re
from pathlib import Path

import numpy as np
import torch

from dmf.core.errors import ResultExistsError
from dmf.core.files import atomic_path, write_json_atomic
from dmf.models.checkpoint import safe_load

_STATE = re.compile(r"state_a(\d+)_r(\d+)\.pt$")


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


class PartialRun:
    def __init__(self, directory: str | Path, fingerprint: dict):
        self.dir = Path(directory)
        self.fingerprint = json.loads(_canonical(fingerprint))
        self.spec = self.dir / "spec.json"

    def check(self):
        """Raise if the directory holds a partial run made with other settings, or state files of unknown origin."""
        if not self.spec.exists():
            if self.files():
                raise ResultExistsError(f"{self.dir} holds partial states but no spec.json saying what produced them; they "
                                 f"cannot be trusted. Fix: pass eval.overwrite=true to discard them, or choose a new "
                                 f"eval.out_dir.")
            return
        old = json.loads(self.spec.read_text())
        if _canonical(old) != _canonical(self.fingerprint):
            diff = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
            raise ResultExistsError(
                f"{self.dir} holds a partial run with other settings (differ: {', '.join(diff)}). Fix: pass "
                f"eval.overwrite=true to discard it, or choose a new eval.out_dir.")

    def write_spec(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.spec.exists():
            write_json_atomic(self.spec, self.fingerprint, indent=1, sort_keys=True)

    def files(self) -> list[Path]:
        return sorted(p for p in self.dir.glob("state_a*_r*.pt") if _STATE.search(p.name)) if self.dir.exists() else []

    def _load(self, path: Path) -> dict:
        return _from_tensors(safe_load(path))

    def done_chunks(self) -> set[int]:
        done = set()
        for p in self.files():
            chunks = self._load(p)["chunks"]
            overlap = done.intersection(chunks)
            if overlap:
                raise RuntimeError(f"{p} repeats chunks {sorted(overlap)[:5]} recorded elsewhere: the partial "
                                   f"results in {self.dir} are inconsistent; rerun with eval.overwrite=true")
            done.update(chunks)
        return done

    def next_attempt(self) -> int:
        return 1 + max((int(_STATE.search(p.name).group(1)) for p in self.files()), default=0)

    def save(self, attempt: int, rank: int, chunks: list[int], states: dict):
        with atomic_path(self.dir / f"state_a{attempt:03d}_r{rank:04d}.pt") as tmp:
            torch.save({"chunks": sorted(chunks), "states": _to_tensors(states)}, tmp)

    def merged(self, num_chunks: int) -> tuple[list[int], list[dict]]:
        """All recorded chunks and the states of every file; raises unless chunks 0..num_chunks-1 appear once."""
        chunks, states = [], []
        for p in self.files():
            d = self._load(p)
            chunks += d["chunks"]
            states.append(d["states"])
        missing = sorted(set(range(num_chunks)) - set(chunks))
        if len(chunks) != len(set(chunks)) or missing or len(set(chunks)) != num_chunks:
            raise RuntimeError(f"partial results in {self.dir} do not cover chunks 0..{num_chunks - 1} exactly once "
                               f"(missing {missing[:5]}); rerun to complete them or pass eval.overwrite=true")
        return sorted(chunks), states


def _to_tensors(obj):
    """numpy arrays and scalars -> tensors (float64 kept), so a state file needs no numpy globals to load."""
    if isinstance(obj, dict):
        return {k: _to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (np.ndarray, np.generic)):
        return torch.from_numpy(np.array(obj))
    return obj


def _from_tensors(obj):
    if isinstance(obj, dict):
        return {k: _from_tensors(v) for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    return obj
