"""A stand-in "implementation": writes a training log in one of the seven implementations' real formats.

It exists because the 2019/2020-era frameworks and 8 V100s cannot run here; it is clearly not one of
them.  See ``formats.py`` (the generators) and ``standin_impl.py`` (the command line).
"""

from .formats import FORMATS, MemorySink, Simulation, TimeModel, simulate

__all__ = ["FORMATS", "MemorySink", "Simulation", "TimeModel", "simulate"]
