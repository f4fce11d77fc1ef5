"""WASM skills in wasmtime: WASI preview 1 command modules (`_start`).

The input JSON arrives on stdin (from memory: it is never written to a file), the output
JSON leaves on stdout, stderr is the skill's log. Each call gets a fresh store bounded as
a whole by the skill's memory limit (one linear memory of 7/8 of it, tables of the rest,
one instance), a wall-clock deadline (epochs ticked every EPOCH_MS) and, if set, fuel.
Each runtime has an engine of its own, so interrupting one (a cancelled run) ends its
calls and no other. Compiled modules are cached by the
hash of their bytes, in memory and on disk, so a changed file is compiled anew on its
next call (hot reload) while calls already running keep the module they started with.

Host functions, imported from module `cis`, take and give JSON through guest memory:
  memory_search(ptr, len) -> i64   request {"query", "limit"?, ...}; needs memory_read
  memory_get(ptr, len) -> i64      request {"id_or_key", "scope"?};   needs memory_read
  memory_add(ptr, len) -> i64      request {"text", ...};             needs memory_write
  time_ms() -> i64                 milliseconds since the epoch
An i64 answer is (pointer << 32) | length of the JSON answer, written into a buffer the
host asks the guest for through its exported `cis_alloc(size) -> pointer`. A call the
manifest does not permit ends the skill with an error.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import wasmtime
from wasmtime import _ffi as ffi

from ..errors import CISError, InvalidInput, SkillError
from .calls import MAX_LOG, MAX_OUTPUT, Call, failure
from .manifest import Manifest

EPOCH_MS = 5
TABLES = 4  # tables a store may make (C and Rust modules make one)


Host = Callable[[str, dict[str, Any]], Any]  # (function, request) -> answer


class _Current(threading.local):
    host: Host | None = None
    manifest: Manifest | None = None


class WasmRuntime:
    """One engine, its module cache and linker, shared by every call of every skill."""

    def __init__(self, cache_dir: Path):
        config = wasmtime.Config()
        config.epoch_interruption = True
        config.consume_fuel = True
        self.engine = wasmtime.Engine(config)
        self.cache_dir = cache_dir
        self._modules: dict[str, wasmtime.InstancePre] = {}
        self._lock = threading.Lock()
        self._current = _Current()
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self._define_host()
        self._active = 0  # calls running now
        self._interrupting = False
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="cis-wasm-epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(EPOCH_MS / 1000):
            self.engine.increment_epoch()

    @property
    def active(self) -> int:
        """Calls running now."""
        return self._active

    def interrupt(self) -> None:
        """End every call of this runtime (a cancelled run), and refuse any later one:
        the engine's epoch is advanced until each call has passed its deadline."""
        with self._lock:
            self._interrupting = True
        while self._active:
            for _ in range(10_000):
                self.engine.increment_epoch()
            time.sleep(0)

    def close(self) -> None:
        """End the calls still running, stop the epoch ticker and drop the compiled
        modules (before the engine goes)."""
        self.interrupt()
        self._stop.set()
        self._ticker.join()
        with self._lock:
            self._modules.clear()

    # ---- modules ---------------------------------------------------------------------

    def prepared(self, wasm: bytes) -> wasmtime.InstancePre:
        """The module of these bytes, compiled once (from the disk cache if it is there)."""
        digest = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            found = self._modules.get(digest)
            if found is not None:
                return found
            module = self._load(digest, wasm)
            prepared = self.linker.instantiate_pre(module)
            self._modules[digest] = prepared
            return prepared

    def _load(self, digest: str, wasm: bytes) -> wasmtime.Module:
        path = self.cache_dir / f"{digest}-{wasmtime.__name__}.cwasm"
        if path.exists():
            try:
                return wasmtime.Module.deserialize_file(self.engine, str(path))
            except wasmtime.WasmtimeError:
                path.unlink(missing_ok=True)  # from another wasmtime: compile again
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise InvalidInput(f"not a valid WASM module: {exc}") from exc
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        try:  # each writer its own file, renamed whole into place: no reader sees half
            tmp.write_bytes(module.serialize())
            tmp.replace(path)
        except OSError:
            tmp.unlink(missing_ok=True)  # no cache this time; the module still runs
        return module

    # ---- calls -----------------------------------------------------------------------

    def call(self, manifest: Manifest, wasm: bytes, payload: Any, host: Host) -> Call:
        """Run the skill once on `payload` (JSON data); its output JSON, parsed."""
        started = time.perf_counter()
        prepared = self.prepared(wasm)
        limits = manifest.limits
        budget = Budget(limits.memory_mb)
        store = wasmtime.Store(self.engine)
        store.set_limits(
            memory_size=budget.memory,
            table_elements=budget.table_elements,
            instances=1,
            tables=TABLES,
            memories=1,
        )
        store.set_fuel(limits.fuel if limits.fuel > 0 else 2**62)
        store.set_epoch_deadline(max(1, limits.timeout_ms // EPOCH_MS))
        out, log = Capped(MAX_OUTPUT), Capped(MAX_LOG)
        wasi = wasmtime.WasiConfig()
        wasi.argv = [manifest.skill.name]
        _stdin_bytes(wasi, msgspec.json.encode(payload))
        wasi.stdout_custom = out.write
        wasi.stderr_custom = log.write
        for entry in manifest.permissions.filesystem:
            writable = entry.startswith("rw:")
            path = entry[3:] if writable else entry
            wasi.preopen_dir(path, path, writable)
        store.set_wasi(wasi)
        with self._lock:
            if self._interrupting:
                raise SkillError("skill was interrupted: its run was cancelled")
            self._active += 1
        self._current.manifest, self._current.host = manifest, host
        instance = None
        try:
            instance = prepared.instantiate(store)
            start = instance.exports(store)["_start"]
            assert isinstance(start, wasmtime.Func)
            start(store)
        except wasmtime.ExitTrap as exc:
            if exc.code != 0:
                what = f"exited with code {exc.code}"
                raise SkillError(self._why(budget.note(what, instance, store), log)) from exc
        except wasmtime.Trap as exc:
            raise SkillError(self._trap(exc, manifest, budget, instance, store, log)) from exc
        except wasmtime.WasmtimeError as exc:
            if "limit" in str(exc):  # refused at instantiation: too much memory or tables
                what = f"needs more than its memory limit ({budget.says}): {exc}"
            else:
                what = f"failed: {exc}"
            raise SkillError(self._why(what, log)) from exc
        finally:
            self._current.manifest, self._current.host = None, None
            with self._lock:
                self._active -= 1
        if out.over:
            raise SkillError(self._why(f"wrote more than {MAX_OUTPUT} bytes of output", log))
        text = bytes(out.data).strip()
        try:
            result = msgspec.json.decode(text) if text else None
        except msgspec.DecodeError as exc:
            raise SkillError(
                self._why(f"wrote output that is not JSON: {text[:200]!r}", log)
            ) from exc
        return Call(
            output=result,
            log=log.text(),
            millis=(time.perf_counter() - started) * 1000,
        )

    @staticmethod
    def _why(what: str, log: Capped) -> str:
        return failure(what, log.text())

    def _trap(
        self,
        exc: wasmtime.Trap,
        manifest: Manifest,
        budget: Budget,
        instance: wasmtime.Instance | None,
        store: Any,
        log: Capped,
    ) -> str:
        message = str(exc)
        code = exc.trap_code
        limits = manifest.limits
        if code == wasmtime.TrapCode.INTERRUPT and self._interrupting:
            return self._why("was interrupted: its run was cancelled", log)
        if code == wasmtime.TrapCode.INTERRUPT:
            return self._why(f"timed out after {limits.timeout_ms} ms (limits.timeout_ms)", log)
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return self._why(f"ran out of fuel ({limits.fuel}, limits.fuel)", log)
        for mark in ("forbidden:", "bad buffer:"):
            if mark in message:
                return self._why(message[message.index(mark) :].splitlines()[0], log)
        cause = [line.strip() for line in message.splitlines() if "wasm trap:" in line]
        what = cause[0].split("wasm trap:", 1)[1].strip() if cause else message.splitlines()[0]
        return self._why(budget.note(f"trapped: {what}", instance, store), log)

    # ---- host functions ----------------------------------------------------------------

    def _define_host(self) -> None:
        i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
        request = wasmtime.FuncType([i32, i32], [i64])
        for name, needs in (
            ("memory_search", "memory_read"),
            ("memory_get", "memory_read"),
            ("memory_add", "memory_write"),
        ):
            self.linker.define_func("cis", name, request, self._host(name, needs), True)
        self.linker.define_func(
            "cis", "time_ms", wasmtime.FuncType([], [i64]), lambda: time.time_ns() // 1_000_000
        )

    def _host(self, name: str, needs: str) -> Callable[..., int]:
        def call(caller: wasmtime.Caller, ptr: int, length: int) -> int:
            try:
                return self._serve(caller, name, needs, ptr, length)
            except wasmtime.Trap:
                raise
            except Exception as exc:  # nothing a guest does may escape as anything but a trap
                raise wasmtime.Trap(f"bad buffer: {name}: {type(exc).__name__}: {exc}") from exc

        return call

    def _serve(self, caller: wasmtime.Caller, name: str, needs: str, ptr: int, length: int) -> int:
        manifest, host = self._current.manifest, self._current.host
        assert manifest is not None and host is not None
        if not getattr(manifest.permissions, needs):
            raise wasmtime.Trap(f"forbidden: {name} needs permissions.{needs} = true")
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            raise wasmtime.Trap("bad buffer: the skill exports no memory")
        size = memory.data_len(caller)
        if ptr < 0 or length < 0 or ptr + length > size:
            raise wasmtime.Trap(
                f"bad buffer: {name}({ptr}, {length}) reaches past its memory ({size} bytes)"
            )
        raw = memory.read(caller, ptr, ptr + length)
        try:
            asked = msgspec.json.decode(raw)
            if not isinstance(asked, dict):
                raise InvalidInput("a request must be a JSON object")
            answer: Any = {"ok": host(name, asked)}
        except CISError as exc:
            answer = {"error": {"code": exc.code, "message": str(exc)}}
        except (msgspec.DecodeError, TypeError, ValueError, RecursionError) as exc:
            answer = {"error": {"code": "invalid_input", "message": str(exc)}}
        data = msgspec.json.encode(answer)
        alloc = caller.get("cis_alloc")
        if not isinstance(alloc, wasmtime.Func):
            raise wasmtime.Trap(f"bad buffer: {name}: the skill must export cis_alloc(size)")
        where = alloc(caller, len(data))
        size = memory.data_len(caller)  # cis_alloc may have grown it
        if not isinstance(where, int) or where <= 0 or where + len(data) > size:
            raise wasmtime.Trap(
                f"bad buffer: cis_alloc({len(data)}) gave {where!r}, not room inside its memory"
                f" ({size} bytes)"
            )
        memory.write(caller, data, where)
        return (where << 32) | len(data)


class Capped:
    """What a stream of the guest wrote, up to `cap` bytes. Past the cap its writes fail
    (the guest sees an error) and `over` is set: a WASI callback must never raise."""

    def __init__(self, cap: int):
        self.cap = cap
        self.data = bytearray()
        self.over = False

    def write(self, chunk: bytes) -> int:
        if len(self.data) + len(chunk) > self.cap:
            self.over = True
            return -errno.EFBIG
        self.data.extend(chunk)
        return len(chunk)

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class Budget:
    """One store's share of `limits.memory_mb`: its linear memory gets 7/8, its tables
    (at most TABLES, each element 8 bytes) the rest, so the whole store stays in it."""

    def __init__(self, memory_mb: int):
        total = memory_mb * 1024 * 1024
        self.says = f"limits.memory_mb = {memory_mb}"
        self.memory = total - total // 8
        self.table_elements = max(1024, total // 8 // 8 // TABLES)

    def note(self, what: str, instance: wasmtime.Instance | None, store: Any) -> str:
        """`what` went wrong; if the store was at its memory or table limit then, say so
        (a guest whose memory.grow or table.grow was refused traps its own way)."""
        if instance is None:
            return what
        used = [
            (item.data_len(store), self.memory)
            if isinstance(item, wasmtime.Memory)
            else (item.size(store), self.table_elements)
            for item in instance.exports(store).values()
            if isinstance(item, wasmtime.Memory | wasmtime.Table)
        ]
        if any(size > cap * 3 // 4 for size, cap in used):
            return f"hit its memory limit ({self.says}) and {what}"
        return what


def _stdin_bytes(wasi: wasmtime.WasiConfig, data: bytes) -> None:
    """The guest's stdin, from memory. wasmtime-py offers only a file for stdin; the C
    API's wasi_config_set_stdin_bytes (in the same pinned wasmtime) takes bytes, so the
    input is never written to disk."""
    vec = ffi.wasm_byte_vec_t()
    buffer = ctypes.create_string_buffer(data, len(data))
    ffi.wasm_byte_vec_new(
        ctypes.byref(vec), len(data), ctypes.cast(buffer, ctypes.POINTER(ffi.wasm_byte_t))
    )
    ffi.wasi_config_set_stdin_bytes(wasi.ptr(), ctypes.byref(vec))  # takes the vector over
