"""Backends edgerun can run a model on, behind one protocol; `edgerun.registry` lists the built-in ones."""

from edgerun.runtime.backends.base import Availability, Backend, BackendEntry, Capabilities, ModelSource

__all__ = ["Availability", "Backend", "BackendEntry", "Capabilities", "ModelSource"]
