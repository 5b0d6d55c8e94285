"""Simulated Customer.io workspace: a local HTTP server speaking the App API with deterministic data."""

from .faults import FaultConfig
from .server import SimulatorServer, Stats
from .workspace import Workspace

__all__ = ["FaultConfig", "SimulatorServer", "Stats", "Workspace"]
