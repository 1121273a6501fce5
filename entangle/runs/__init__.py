"""The run directory: writer and reader, safe file primitives, the writer lock, untrusted input."""

from entangle.runs.directory import RunReader, RunWriter

__all__ = ["RunReader", "RunWriter"]
