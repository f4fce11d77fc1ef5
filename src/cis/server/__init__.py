"""The node as a service: HTTP API and MCP server (thin shells over the Python API)."""
