"""Building an HNSW graph in a child process, so that no build holds the node's interpreter.

usearch holds the interpreter for the whole of an insertion: a node that built in its
own process had to do it in short slices, taking turns with every search (at 100k
vectors on 2 cores, half the rate of one long call, and each search waited for a slice).
Every graph is built by a child instead: `python -m cis.index.graph_build` takes the
graph built so far (if any), the keys to drop from it and the vectors to add, builds on
every core while the node goes on searching what it holds, and hands the new graph
back. The child runs at a lower priority (NICE), gets no secret (`secrets.child_env`)
and writes no file: everything goes through its pipes.

On the child's stdin: HEADER (dimensions, bytes of the base graph, keys to drop), the
base graph, the keys to drop (uint64), then chunks, each a COUNT, that many uint64 keys
and that many float32 rows, ended by a COUNT of 0. On its stdout: the new graph's LENGTH
and bytes. A failure is its exit status and a line on stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys
from typing import IO, Any

import numpy as np

from ..secrets import child_env

HEADER = struct.Struct("<IQQ")
COUNT = struct.Struct("<I")
LENGTH = struct.Struct("<Q")
# the child yields the cores to the node's own threads: searches scan what waits during a
# build, and at 100k (2 cores) they took 30-96 ms beside a child of equal priority, 9-12
# ms beside this one, which also finished sooner (18.6 -> 14.0 s, one run each)
NICE = 10


class BuildFailed(Exception):
    """The child could not be started or did not hand a graph back."""


class Build:
    """One graph being built in a child process: `send` vectors, then `finish`."""

    def __init__(self, dim: int, base: bytes | bytearray | memoryview | None, drop: np.ndarray):
        """`base`: a graph as usearch saves one (None for none); `drop`: its keys to
        remove (rowids)."""
        self.dim = dim
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "cis.index.graph_build"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_env(),
            )
        except OSError as exc:
            raise BuildFailed(f"cannot start a graph builder: {exc}") from exc
        try:
            size = memoryview(base).nbytes if base is not None else 0
            self._write(HEADER.pack(dim, size, len(drop)))
            if base is not None:
                self._write(base)
            self._write(np.asarray(drop, dtype="<u8").tobytes())
        except BuildFailed:
            self.close()
            raise

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(data)
        except (OSError, ValueError) as exc:  # the child is gone (or was killed)
            raise BuildFailed(self._reason(f"the graph builder stopped reading ({exc})")) from exc

    def send(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Vectors (unit float32 rows) to add under `keys` (rowids)."""
        if rows.shape != (len(keys), self.dim):
            raise ValueError(f"{len(keys)} keys need {len(keys)} rows of {self.dim}")
        self._write(COUNT.pack(len(keys)) + np.asarray(keys, dtype="<u8").tobytes())
        self._write(np.ascontiguousarray(rows, dtype="<f4").data)

    def finish(self) -> bytes:
        """The graph (as usearch saves one): the base plus every vector sent."""
        try:
            self._write(COUNT.pack(0))
            stdin = self._proc.stdin
            assert stdin is not None and self._proc.stdout is not None
            try:
                stdin.close()
            except OSError as exc:
                raise BuildFailed(self._reason(f"the graph builder stopped ({exc})")) from exc
            head = self._proc.stdout.read(LENGTH.size)
            size = LENGTH.unpack(head)[0] if len(head) == LENGTH.size else -1
            blob = self._proc.stdout.read(size) if size >= 0 else b""
            status = self._proc.wait()
            if status != 0 or len(blob) != size:
                raise BuildFailed(self._reason(f"the graph builder exited with {status}"))
            return blob
        finally:
            self.close()

    def _reason(self, what: str) -> str:
        """`what`, with the child's own word on it when it gave one."""
        if self._proc.poll() is None or self._proc.stderr is None:
            return what
        said = self._proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return f"{what}: {said[-1]}" if said else what

    def kill(self) -> None:
        """Stop the child now (a `send` or `finish` under way then fails)."""
        if self._proc.poll() is None:
            self._proc.kill()

    def close(self) -> None:
        """Stop the child if it still runs and release its pipes."""
        self.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _exactly(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError("the input ended early")
    return data


def too_holey(present: int, removed: int) -> bool:
    """Whether a graph with slots of `removed` rows beside `present` ones is unsafe to
    read back.

    usearch 2.23 keeps a removed row's slot (an added one may reuse it) and saves every
    slot, but a load or view sizes the graph by the rows left: with fewer than about
    half the slots in use it writes past its memory (measured: 300 rows in 1,000 slots
    aborted the process, 400 did not). A quarter of the slots empty is the limit here.
    """
    return removed * 4 > (present + removed)


def _packed(ann: Any, dim: int) -> Any:
    """The graph built anew from its own rows, without the slots of removed ones."""
    from .vectors import new_ann

    keys = np.asarray(ann.keys, dtype=np.uint64)
    packed = new_ann(dim, ann.dtype)
    if len(keys):  # bfloat16 and float16 come back as float32 and go in unchanged
        packed.add(keys, np.asarray(ann.get(keys, dtype=np.float32)), threads=0)
    return packed


def main() -> int:
    from .vectors import new_ann

    # a Ctrl-C at the node's terminal is the node's to act on (it stops this child); not
    # a session of its own, where the kernel's autogroups would share the cores evenly
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source, out = sys.stdin.buffer, sys.stdout.buffer
    if hasattr(os, "nice"):
        os.nice(NICE)
    try:
        dim, base, drop = HEADER.unpack(_exactly(source, HEADER.size))
        ann = new_ann(dim)
        if base:
            ann.load(_exactly(source, base))
        if drop:
            ann.remove(np.frombuffer(_exactly(source, 8 * drop), dtype="<u8"))
        while count := COUNT.unpack(_exactly(source, COUNT.size))[0]:
            keys = np.frombuffer(_exactly(source, 8 * count), dtype="<u8")
            rows = np.frombuffer(_exactly(source, 4 * dim * count), dtype="<f4")
            ann.add(keys, rows.reshape(count, dim), threads=0)
        if too_holey(len(ann), ann.stats.nodes - len(ann)):
            ann = _packed(ann, dim)
        blob = ann.save()
        new_ann(dim).view(blob)  # a graph that cannot be read fails here, not in the node
    except (EOFError, MemoryError, RuntimeError, ValueError) as exc:
        print(f"graph builder: {exc!r}", file=sys.stderr)
        return 1
    out.write(LENGTH.pack(len(blob)))
    out.write(blob)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
