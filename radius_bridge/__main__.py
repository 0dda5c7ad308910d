"""``python -m radius_bridge`` runs the command-line interface."""

from radius_bridge.cli import run

run()
