"""The `specd` command line: one module per command group; main.py holds the parser and the core commands."""
