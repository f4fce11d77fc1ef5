"""Installed skills: a directory each under `<data dir>/skills`, with its manifest."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from ..errors import InvalidInput, NotFound, SkillError
from . import manifest as skill_manifest
from .calls import Call
from .manifest import Manifest
from .native import argv_of, run_native
from .native import interrupt as interrupt_native
from .remote import run_remote

if TYPE_CHECKING:
    from ..dag.service import DagService
    from ..memory.service import MemoryService
    from .wasm import WasmRuntime


class SkillRegistry:
    def __init__(self, data_dir: Path, memory: MemoryService):
        self.root = data_dir / "skills"
        self.cache_dir = data_dir / "cache" / "wasm"
        self.memory = memory
        self.dags: DagService | None = None  # set by the node (workflow skills)
        self._runtime: WasmRuntime | None = None

    @property
    def runtime(self) -> WasmRuntime:
        if self._runtime is None:
            from .wasm import WasmRuntime  # wasmtime loads only when a WASM skill runs

            self._runtime = WasmRuntime(self.cache_dir)
        return self._runtime

    def interrupt(self) -> None:
        """End the skill calls running in this process, WASM and native (their callers
        get SkillError); a remote call ends at its own time-out."""
        interrupt_native()
        if self._runtime is not None:
            self._runtime.interrupt()

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    def install(self, source: str | Path) -> Manifest:
        """Install (or upgrade) a skill from its directory or a .tar.gz of it."""
        source = Path(source)
        with tempfile.TemporaryDirectory(prefix="cis-skill-") as scratch:
            if source.is_file() and source.name.endswith((".tar.gz", ".tgz")):
                directory = _unpack(source, Path(scratch))
            elif source.is_dir():
                directory = source
            else:
                raise InvalidInput(f"{source}: give a skill directory or a .tar.gz of one")
            manifest = skill_manifest.load(directory)
            if manifest.skill.type in skill_manifest.NATIVE:
                argv_of(manifest, directory)  # a malformed entry is refused now
            self.root.mkdir(parents=True, exist_ok=True)
            target = self.root / manifest.skill.name
            staged = self.root / f".{manifest.skill.name}.new"
            shutil.rmtree(staged, ignore_errors=True)
            shutil.copytree(directory, staged, symlinks=False)
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
        return manifest

    def installed(self) -> list[Manifest]:
        if not self.root.exists():
            return []
        out = []
        for directory in sorted(p for p in self.root.iterdir() if not p.name.startswith(".")):
            try:
                out.append(skill_manifest.load(directory))
            except InvalidInput:
                continue  # a damaged skill is skipped here; `info` says what is wrong
        return out

    def get(self, name: str) -> Manifest:
        directory = self.root / name
        if not name or "/" in name or name.startswith(".") or not directory.is_dir():
            raise NotFound(f"no skill {name!r}; `cis skill list` shows the installed ones")
        return skill_manifest.load(directory)

    def remove(self, name: str) -> Manifest:
        found = self.get(name)
        shutil.rmtree(self.root / name)
        return found

    def run(self, name: str, payload: Any) -> Call:
        """Run a skill once on `payload`; SkillError if it fails in any way."""
        found = self.get(name)
        directory = self.root / name
        kind = found.skill.type
        if kind in skill_manifest.NATIVE:
            return run_native(found, directory, payload)
        if kind == "dag":
            return self._run_dag(found, directory, payload)
        if kind == "remote":
            return run_remote(found, payload)
        wasm = (directory / found.skill.entry).read_bytes()  # read now: hot reload
        return self.runtime.call(found, wasm, payload, self._host)

    def _run_dag(self, found: Manifest, directory: Path, payload: Any) -> Call:
        """A workflow as a skill: the input's fields are its inputs, the output maps each
        task to its output."""
        if self.dags is None:
            raise SkillError("workflow skills need the node's workflow runner")
        if not isinstance(payload, dict):
            raise InvalidInput("a workflow skill takes an object of inputs")
        inputs = {
            str(k): v if isinstance(v, str) else msgspec.json.encode(v).decode()
            for k, v in payload.items()
        }
        began = time.perf_counter()
        run = self.dags.run(directory / found.skill.entry, inputs=inputs)
        outputs = {t.task_id: (t.output or "").strip() for t in run.tasks}
        if run.status != "succeeded":
            failed = [f"{t.task_id}: {t.error}" for t in run.tasks if t.status == "failed"]
            raise SkillError(f"workflow {run.id} {run.status}: " + "; ".join(failed))
        return Call(
            output={"run": run.id, "outputs": outputs},
            log="",
            millis=(time.perf_counter() - began) * 1000,
        )

    def route(self, request: str) -> list[tuple[float, Manifest]]:
        """Installed skills by how well their description matches `request`, best first."""
        skills = [s for s in self.installed() if s.skill.description.strip()]
        if not skills:
            return []
        embed = self.memory.embedder.embed_queries
        vectors = embed([request, *(s.skill.description for s in skills)])
        scores = vectors[1:] @ vectors[0]
        order = np.argsort(-scores)
        return [(round(float(scores[i]), 4), skills[i]) for i in order]

    def _host(self, name: str, asked: dict[str, Any]) -> Any:
        memory = self.memory
        if name == "memory_search":
            fields = {k: v for k, v in asked.items() if k != "query"}
            return msgspec.to_builtins(memory.search(str(asked.get("query", "")), **fields))
        if name == "memory_get":
            found = memory.get(str(asked.get("id_or_key", "")), asked.get("scope", "global"))
            return None if found is None else msgspec.to_builtins(found)
        if name == "memory_add":
            fields = {k: v for k, v in asked.items() if k != "text"}
            return msgspec.to_builtins(memory.add(asked.get("text"), **fields))  # type: ignore[arg-type]
        raise InvalidInput(f"no host function {name}")


def _unpack(archive: Path, into: Path) -> Path:
    """Extract a skill archive safely (no links, no paths outside); its skill directory."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"{archive}: cannot unpack ({exc})") from exc
    if (into / "skill.toml").exists():
        return into
    inner = [p for p in into.iterdir() if p.is_dir()]
    if len(inner) == 1 and (inner[0] / "skill.toml").exists():
        return inner[0]
    raise InvalidInput(f"{archive}: holds no skill.toml at its top")
