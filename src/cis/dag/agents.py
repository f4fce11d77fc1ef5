"""Agent-CLI tasks: how each agent takes a prompt, what memory goes in, what comes out.

A prompt carries the node's memories, so it never goes on argv (any local user reads a
process's arguments): claude, codex and opencode read it on standard input, aider from a
file of its own (0600, in a 0700 folder, removed after the run), and any other command on
standard input. Before the run the node's memories relevant to the prompt are put in
front of it; after a success the agent's answer is stored as a memory (category
`result`). A failure that reads like a rate limit or a provider outage is retryable on
resume; any other failure is the task's own.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..memory.service import MemoryService

PROMPT_FILE = "{prompt_file}"
ARGV: dict[str, list[str]] = {
    "claude": ["claude", "-p"],
    "codex": ["codex", "exec", "-"],
    "opencode": ["opencode", "run", "Do the task given on standard input."],
    "aider": ["aider", "--yes-always", "--no-pretty", "--message-file", PROMPT_FILE],
}
MEMORIES_PER_PROMPT = 5
_RETRYABLE = re.compile(
    r"rate[ _-]?limit|too many requests|\b429\b|\b529\b|overloaded|quota|"
    r"\b50[234]\b|service unavailable|temporarily unavailable|provider error|timed? ?out",
    re.IGNORECASE,
)


@contextlib.contextmanager
def command(agent: str, prompt: str) -> Iterator[tuple[list[str], bytes | None]]:
    """argv for the agent and what goes to its standard input, while the block runs (a
    prompt file, where the agent needs one, is removed after)."""
    name = agent.strip()
    template = ARGV.get(name)
    data = prompt.encode("utf-8")
    if template is None:
        yield name.split(), data
        return
    if PROMPT_FILE not in template:
        yield list(template), data
        return
    with tempfile.TemporaryDirectory(prefix="cis-prompt-") as folder:  # made 0700
        path = Path(folder) / "prompt.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        yield [str(path) if part == PROMPT_FILE else part for part in template], None


def with_memories(memory: MemoryService | None, prompt: str) -> str:
    """The prompt, preceded by the memories that bear on it (if any)."""
    if memory is None:
        return prompt
    hits = memory.search(prompt[:2000], limit=MEMORIES_PER_PROMPT)
    if not hits:
        return prompt
    lines = "\n".join(f"- {h.memory.text}" for h in hits)
    return f"Relevant memories (from CIS):\n{lines}\n\n{prompt}"


def retryable(exit_code: int | None, output: str) -> bool:
    """Whether a failed agent run looks like the provider's fault (retry on resume)."""
    return exit_code not in (0, None) and bool(_RETRYABLE.search(output[-4000:]))


def remember(memory: MemoryService | None, dag: str, task: str, output: str) -> None:
    """Store an agent's final answer as a `result` memory."""
    text = output.strip()
    if memory is None or not text:
        return
    limit = memory.config.max_text_bytes
    data = text.encode("utf-8")
    if len(data) > limit:
        text = data[-limit:].decode("utf-8", errors="ignore")
    memory.add(text, category="result", tags=("dag", f"dag:{dag}", f"task:{task}"))
