"""memscan's exceptions. Every refusal of bad input is a ``MemscanError``; each subclass also
derives from the built-in exception a caller would naturally catch."""

from __future__ import annotations


class MemscanError(Exception):
    """Base class of every memscan error."""


class GeometryError(MemscanError, ValueError):
    """A page/section/pageblock/block geometry no kernel could have."""


class LayoutError(MemscanError, ValueError):
    """A layout that contradicts itself (overlaps, zones outside their node, ...)."""


class ParseError(LayoutError):
    """Malformed source text (/proc/iomem, a layout file). Names the input and the line."""


class NoSuchBlockError(MemscanError, LookupError):
    """A memory block id that is out of range or has no memoryN directory."""


class PfnRangeError(MemscanError, IndexError):
    """A pfn range outside the modeled machine."""


class ArgumentError(MemscanError, ValueError):
    """A bad argument to a model call (unknown kernel, bad workload knob, ...)."""


class ModelMemoryError(MemscanError, MemoryError):
    """The model would need more memory than can be allocated; the message says how much
    and for what. Raised before allocating where the size is known in advance."""


class InternalError(MemscanError, RuntimeError):
    """A bug in memscan (a Rust panic caught at the boundary). Please report it."""
