"""The `tdviz` command line (typer). Only argument parsing and printing: the work is in `tdviz`."""
