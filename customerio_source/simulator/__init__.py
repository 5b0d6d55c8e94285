"""Simulated Customer.io workspace: a local HTTP server speaking the App API with deterministic data."""

from .server import SimulatorServer, Stats
from .workspace import Workspace

__all__ = ["SimulatorServer", "Stats", "Workspace"]
