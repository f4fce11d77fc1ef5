"""Agent-CLI tasks: how each agent takes a prompt, what memory goes in, what comes out.

Known agents get the prompt as their non-interactive flag expects; any other command
reads it on standard input. Before the run the node's memories relevant to the prompt
are put in front of it; after a success the agent's answer is stored as a memory
(category `result`). A failure that reads like a rate limit or a provider outage is
retryable on resume; any other failure is the task's own.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..memory.service import MemoryService

PROMPT = "{prompt}"
ARGV: dict[str, list[str]] = {
    "claude": ["claude", "-p", PROMPT],
    "aider": ["aider", "--yes-always", "--no-pretty", "--message", PROMPT],
    "opencode": ["opencode", "run", PROMPT],
}
MEMORIES_PER_PROMPT = 5
_RETRYABLE = re.compile(
    r"rate[ _-]?limit|too many requests|\b429\b|\b529\b|overloaded|quota|"
    r"\b50[234]\b|service unavailable|temporarily unavailable|provider error|timed? ?out",
    re.IGNORECASE,
)


def command(agent: str, prompt: str) -> tuple[list[str], bytes | None]:
    """argv for the agent, and what goes to its standard input."""
    name = agent.strip()
    template = ARGV.get(name)
    if template is None:
        return name.split(), prompt.encode("utf-8")
    return [prompt if part == PROMPT else part for part in template], None


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
