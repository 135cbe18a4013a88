"""The rnncore command (cli), its commands (info, bench, train) and nothing
else: no module of the package imports tools."""
