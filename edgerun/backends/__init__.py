"""Backends edgerun can run a model on, behind one protocol and a registry."""

from .base import Availability, Backend, BackendEntry, register, registered

__all__ = ["Availability", "Backend", "BackendEntry", "register", "registered"]
