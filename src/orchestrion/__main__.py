"""`python -m orchestrion`: the same command line as `orchestrion`."""

from orchestrion.cli import main

main()
