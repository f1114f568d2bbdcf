"""The ``edgerun`` command line: parse, call the library, render. One module per command group."""

from edgerun.cli.main import main

__all__ = ["main"]
