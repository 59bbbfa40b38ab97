"""`webhooks`, the command line: one module per command group, output helpers in
`output`. A thin layer over `webhooks.ops` and the publisher; may import anything below it.
"""

from webhooks.cli.app import app, main

__all__ = ["app", "main"]
