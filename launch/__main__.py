"""`python -m launch …`: the launcher's command line (see launch/cli.py)."""

from launch.cli import run

run()
