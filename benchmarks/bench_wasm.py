"""WASM skills in wasmtime: compiling a module, loading it from the disk cache, a cached
instantiate (fresh store, WASI set up, instance made from the pre-linked module), and a
whole call of a small C skill (input through stdin, JSON out through stdout)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import wasmtime
from common import emit, temp_dir

from cis.skills import manifest as skill_manifest
from cis.skills.wasm import WasmRuntime

ROOT = Path(__file__).parents[1]
SKILL = ROOT / "examples" / "skills" / "wordcount"
CALLS = 300


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    manifest = skill_manifest.load(SKILL)
    wasm = (SKILL / "wordcount.wasm").read_bytes()
    cache = temp_dir("wasm")
    runtime = WasmRuntime(cache)
    began = time.perf_counter()
    runtime.prepared(wasm)
    compile_s = time.perf_counter() - began
    runtime.close()

    runtime = WasmRuntime(cache)  # a new process's view: the module comes from disk
    began = time.perf_counter()
    prepared = runtime.prepared(wasm)
    from_disk_s = time.perf_counter() - began

    instantiate = []
    with tempfile.NamedTemporaryFile() as stdin:
        for _ in range(CALLS):
            began = time.perf_counter()
            store = wasmtime.Store(runtime.engine)
            store.set_limits(memory_size=manifest.limits.memory_mb * 1024 * 1024)
            wasi = wasmtime.WasiConfig()
            wasi.stdin_file = stdin.name
            store.set_wasi(wasi)
            prepared.instantiate(store)
            instantiate.append(time.perf_counter() - began)

    calls = []
    payload = {"text": "a few words to count"}
    for _ in range(CALLS):
        began = time.perf_counter()
        runtime.call(manifest, wasm, payload, lambda name, asked: None)
        calls.append(time.perf_counter() - began)
    runtime.close()
    emit(
        "wasm",
        module_bytes=len(wasm),
        compile_ms=compile_s * 1000,
        load_from_disk_cache_ms=from_disk_s * 1000,
        compile_over_disk_cache=compile_s / from_disk_s,
        cached_instantiate_p50_ms=median_ms(instantiate),
        whole_call_p50_ms=median_ms(calls),
        whole_call_p95_ms=sorted(calls)[int(len(calls) * 0.95)] * 1000,
        note="whole_call: hash the bytes, new store with limits, stdin file, instantiate,"
        " run _start (wasi-libc start-up, read, count, printf), parse the JSON output",
    )


if __name__ == "__main__":
    main()
