"""What the root command hands to every subcommand: where the node lives."""

from __future__ import annotations

from pathlib import Path

from ..node import Node
from ..secrets import passphrase_from_parent


class State:
    def __init__(self, data_dir: Path | None):
        self.data_dir = data_dir
        self.passphrase = passphrase_from_parent()  # a runner CIS started itself

    def open(self, *, create: bool = False, background: bool = False) -> Node:
        """The node; `background` embeds on a thread as memories arrive (for servers)."""
        if self.passphrase is not None:
            return Node.open(
                self.data_dir, create=create, background=background, passphrase=self.passphrase
            )
        return Node.open(self.data_dir, create=create, background=background)
