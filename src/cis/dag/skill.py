"""Skills of type `dag`: a workflow as a skill. The input's fields are its inputs; the
output maps each task to its output."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import InvalidInput, SkillError
from ..skills.calls import Call, CallGroup
from ..skills.manifest import Manifest

if TYPE_CHECKING:
    from .service import DagService


class WorkflowSkill:
    """The runner of `dag` skills, given to the skill registry by the node."""

    def __init__(self, dags: Callable[[], DagService]):
        self.dags = dags  # the node's, made when first asked for

    def __call__(self, found: Manifest, directory: Path, payload: Any, group: CallGroup) -> Call:
        if not isinstance(payload, dict):
            raise InvalidInput("a workflow skill takes an object of inputs")
        inputs = {
            str(k): v if isinstance(v, str) else msgspec.json.encode(v).decode()
            for k, v in payload.items()
        }
        began = time.perf_counter()
        run = self.dags().run(directory / found.skill.entry, inputs=inputs)
        outputs = {t.task_id: (t.output or "").strip() for t in run.tasks}
        if run.status != "succeeded":
            failed = [f"{t.task_id}: {t.error}" for t in run.tasks if t.status == "failed"]
            raise SkillError(f"workflow {run.id} {run.status}: " + "; ".join(failed))
        return Call(
            output={"run": run.id, "outputs": outputs},
            log="",
            millis=(time.perf_counter() - began) * 1000,
        )
