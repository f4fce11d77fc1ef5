"""`cis mcp`: the MCP server over standard input and output (no HTTP stack loaded)."""

from __future__ import annotations

import logging
import sys

from ..node import Node
from . import mcp


def plain_logging() -> None:
    """Log lines to stderr (set before the MCP SDK, which would install its own)."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def serve_stdio(node: Node) -> None:
    """MCP over standard input and output, until the client closes the stream."""
    plain_logging()
    server = mcp.build(node, mcp.stdio_caller(node))
    node.memory.embedder_warm()
    server.run("stdio")
