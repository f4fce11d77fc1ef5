"""The `cis` executable: `cis mcp` starts without loading the CLI framework, since agents
spawn it at every session (typer and rich cost about 0.25 s here); every other command
goes through the typer app."""

from __future__ import annotations

import os
import sys

# numpy's OpenBLAS otherwise runs each small vector scan on every core, then spins them:
# one thread halves a search's CPU time here (set before numpy loads)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    if sys.argv[1:] == ["mcp"]:
        from ..errors import CISError
        from ..node import Node
        from ..server.stdio import serve_stdio

        try:
            with Node.open() as node:  # made if it is not there yet, as `cis init` would
                serve_stdio(node)
        except CISError as exc:
            print(f"error: {exc.told('cli')}", file=sys.stderr)
            sys.exit(exc.exit_code)
        return
    from .app import main as app_main

    app_main()


if __name__ == "__main__":  # `python -m cis.cli.entry`, as detached DAG runs start
    main()
