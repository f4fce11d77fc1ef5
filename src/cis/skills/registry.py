"""Installed skills: a directory each under `<data dir>/skills`, with its manifest."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from ..errors import InvalidInput, NotFound, SkillError
from ..model import Search
from ..shapes import convert
from . import manifest as skill_manifest
from .calls import Call, CallGroup
from .manifest import Manifest
from .native import argv_of, run_native
from .remote import run_remote

if TYPE_CHECKING:
    from ..memory.service import MemoryService


Runner = Callable[[Manifest, Path, Any, CallGroup], Call]  # (manifest, its dir, input, group)
FORCED = ".cis-forced"  # in an installed skill: installed with --force (its grants stand)
# the least cosine of request and description for `cis skill do` to pick a skill; measured
# on the example skills: their own requests scored 0.13-0.71, unrelated ones at most 0.12
MIN_MATCH = 0.125


class SkillRegistry:
    """The installed skills, and the runners of each skill type (WASM, native and remote
    here; the node adds workflow skills, which live with the workflows)."""

    def __init__(self, data_dir: Path, memory: MemoryService):
        self.data_dir = data_dir
        self.root = data_dir / "skills"
        self.cache_dir = data_dir / "cache" / "wasm"
        self.memory = memory
        self.runners: dict[str, Runner] = {
            "wasm": self._run_wasm,
            "command": run_native,
            "python": run_native,
            "remote": run_remote,
        }
        self.calls = CallGroup(self.cache_dir)  # direct calls (CLI, HTTP, Python)

    def group(self) -> CallGroup:
        """A new group of calls, interrupted alone (a workflow run's)."""
        return CallGroup(self.cache_dir)

    def close(self) -> None:
        self.calls.close()

    def install(self, source: str | Path, *, force: bool = False) -> Manifest:
        """Install (or upgrade) a skill from its directory or a .tar.gz of it. A grant of
        a path that holds the node's data dir (its key) is refused unless `force`."""
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
            if not force:
                self._check_grants(manifest)
            self.root.mkdir(parents=True, exist_ok=True)
            target = self.root / manifest.skill.name
            staged = self.root / f".{manifest.skill.name}.new"
            shutil.rmtree(staged, ignore_errors=True)
            shutil.copytree(directory, staged, symlinks=False)
            (staged / FORCED).unlink(missing_ok=True)  # only an install says so
            if force:
                (staged / FORCED).touch()
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
        return manifest

    def _check_grants(self, manifest: Manifest) -> None:
        """SkillError for a filesystem grant that reaches the data dir (or lies in it)."""
        home = self.data_dir.resolve()
        for entry in manifest.permissions.filesystem:
            granted = Path(entry.removeprefix("rw:")).resolve()
            if granted == home or granted in home.parents or home in granted.parents:
                raise SkillError(
                    f"skill {manifest.skill.name}: permissions.filesystem grants {granted}, "
                    f"which holds or lies in the node's data dir {home} (and its key); "
                    "refused: grant a narrower path, or install with --force if you mean it"
                )

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

    def run(self, name: str, payload: Any, group: CallGroup | None = None) -> Call:
        """Run a skill once on `payload` (in `group`, else with the direct calls);
        SkillError if it fails in any way."""
        found = self.get(name)
        directory = self.root / name
        if not (directory / FORCED).exists():
            self._check_grants(found)  # the data dir may have moved under it since
        runner = self.runners.get(found.skill.type)
        if runner is None:
            raise SkillError(f"skill {name}: skills of type {found.skill.type} cannot run here")
        return runner(found, directory, payload, group or self.calls)

    def _run_wasm(self, found: Manifest, directory: Path, payload: Any, group: CallGroup) -> Call:
        wasm = (directory / found.skill.entry).read_bytes()  # read now: hot reload
        return group.runtime.call(found, wasm, payload, self._host)

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
            return msgspec.to_builtins(memory.find(convert(asked, Search, "memory_search")))
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
