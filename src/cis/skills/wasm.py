"""WASM skills in wasmtime: WASI preview 1 command modules (`_start`).

The input JSON arrives on stdin, the output JSON leaves on stdout, stderr is the skill's
log. Each call gets a fresh store with the skill's memory limit, a wall-clock deadline
(epochs ticked every EPOCH_MS) and, if set, fuel. Compiled modules are cached by the
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

import hashlib
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import wasmtime

from ..errors import CISError, InvalidInput, SkillError
from .calls import MAX_LOG, MAX_OUTPUT, Call, failure
from .manifest import Manifest

EPOCH_MS = 5


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

    def interrupt(self) -> None:
        """End every call running now (a cancelled run): the engine's epoch is advanced
        until each has passed its deadline and returned."""
        with self._lock:
            self._interrupting = True
        try:
            while self._active:
                for _ in range(10_000):
                    self.engine.increment_epoch()
                time.sleep(0)
        finally:
            with self._lock:
                self._interrupting = False

    def close(self) -> None:
        """Stop the epoch ticker and drop the compiled modules (before the engine goes)."""
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
        tmp = path.with_suffix(".part")
        tmp.write_bytes(module.serialize())
        tmp.replace(path)
        return module

    # ---- calls -----------------------------------------------------------------------

    def call(self, manifest: Manifest, wasm: bytes, payload: Any, host: Host) -> Call:
        """Run the skill once on `payload` (JSON data); its output JSON, parsed."""
        started = time.perf_counter()
        prepared = self.prepared(wasm)
        limits = manifest.limits
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=limits.memory_mb * 1024 * 1024)
        store.set_fuel(limits.fuel if limits.fuel > 0 else 2**62)
        store.set_epoch_deadline(max(1, limits.timeout_ms // EPOCH_MS))
        out, log = bytearray(), bytearray()

        def collect(buffer: bytearray, cap: int) -> Callable[[bytes], None]:
            def write(data: bytes) -> None:
                if len(buffer) + len(data) > cap:
                    raise SkillError(f"wrote more than {cap} bytes")
                buffer.extend(data)

            return write

        with tempfile.NamedTemporaryFile(prefix="cis-skill-", suffix=".json") as stdin:
            stdin.write(msgspec.json.encode(payload))
            stdin.flush()
            wasi = wasmtime.WasiConfig()
            wasi.argv = [manifest.skill.name]
            wasi.stdin_file = stdin.name
            wasi.stdout_custom = collect(out, MAX_OUTPUT)
            wasi.stderr_custom = collect(log, MAX_LOG)
            for entry in manifest.permissions.filesystem:
                writable = entry.startswith("rw:")
                path = entry[3:] if writable else entry
                wasi.preopen_dir(path, path, writable)
            store.set_wasi(wasi)
            self._current.manifest, self._current.host = manifest, host
            with self._lock:
                self._active += 1
            try:
                instance = prepared.instantiate(store)
                start = instance.exports(store)["_start"]
                assert isinstance(start, wasmtime.Func)
                start(store)
            except wasmtime.ExitTrap as exc:
                if exc.code != 0:
                    raise SkillError(self._why(f"exited with code {exc.code}", log)) from exc
            except wasmtime.Trap as exc:
                raise SkillError(self._trap(exc, manifest, store, log)) from exc
            except wasmtime.WasmtimeError as exc:
                hint = ""
                if "memory limits" in str(exc):
                    hint = f" (limits.memory_mb = {limits.memory_mb})"
                raise SkillError(self._why(f"failed: {exc}{hint}", log)) from exc
            finally:
                self._current.manifest, self._current.host = None, None
                with self._lock:
                    self._active -= 1
        text = bytes(out).strip()
        try:
            result = msgspec.json.decode(text) if text else None
        except msgspec.DecodeError as exc:
            raise SkillError(
                self._why(f"wrote output that is not JSON: {text[:200]!r}", log)
            ) from exc
        return Call(
            output=result,
            log=log.decode("utf-8", errors="replace"),
            millis=(time.perf_counter() - started) * 1000,
        )

    @staticmethod
    def _why(what: str, log: bytearray) -> str:
        return failure(what, log.decode("utf-8", errors="replace"))

    def _trap(self, exc: wasmtime.Trap, manifest: Manifest, store: Any, log: bytearray) -> str:
        message = str(exc)
        code = exc.trap_code
        limits = manifest.limits
        if code == wasmtime.TrapCode.INTERRUPT and self._interrupting:
            return self._why("was interrupted: its run was cancelled", log)
        if code == wasmtime.TrapCode.INTERRUPT:
            return self._why(f"timed out after {limits.timeout_ms} ms (limits.timeout_ms)", log)
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return self._why(f"ran out of fuel ({limits.fuel}, limits.fuel)", log)
        if "forbidden:" in message:
            return self._why(message[message.index("forbidden:") :].splitlines()[0], log)
        if code == wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS:
            hint = f" (memory limit {limits.memory_mb} MB, limits.memory_mb)"
            return self._why(f"trapped: {code.name.lower()}{hint}", log)
        cause = [line.strip() for line in message.splitlines() if "wasm trap:" in line]
        what = cause[0].split("wasm trap:", 1)[1].strip() if cause else message.splitlines()[0]
        return self._why(f"trapped: {what}", log)

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
            manifest, host = self._current.manifest, self._current.host
            assert manifest is not None and host is not None
            if not getattr(manifest.permissions, needs):
                raise wasmtime.Trap(f"forbidden: {name} needs permissions.{needs} = true")
            memory = caller.get("memory")
            if not isinstance(memory, wasmtime.Memory):
                raise wasmtime.Trap("the skill exports no memory")
            raw = memory.read(caller, ptr, ptr + length)
            try:
                asked = msgspec.json.decode(raw)
                if not isinstance(asked, dict):
                    raise InvalidInput("a request must be a JSON object")
                answer: Any = {"ok": host(name, asked)}
            except CISError as exc:
                answer = {"error": {"code": exc.code, "message": str(exc)}}
            except (msgspec.DecodeError, TypeError) as exc:
                answer = {"error": {"code": "invalid_input", "message": str(exc)}}
            data = msgspec.json.encode(answer)
            alloc = caller.get("cis_alloc")
            if not isinstance(alloc, wasmtime.Func):
                raise wasmtime.Trap(f"{name}: the skill must export cis_alloc(size) to get answers")
            where = alloc(caller, len(data))
            if not isinstance(where, int) or where <= 0:
                raise wasmtime.Trap(f"{name}: cis_alloc({len(data)}) gave no memory")
            memory.write(caller, data, where)
            return (where << 32) | len(data)

        return call
