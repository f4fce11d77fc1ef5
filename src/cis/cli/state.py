"""What the root command hands to every subcommand: where the node lives."""

from __future__ import annotations

from pathlib import Path

from ..node import Node


class State:
    def __init__(self, data_dir: Path | None):
        self.data_dir = data_dir

    def open(self, *, create: bool = False, background: bool = False) -> Node:
        """The node; `background` embeds on a thread as memories arrive (for servers)."""
        return Node.open(self.data_dir, create=create, background=background)
