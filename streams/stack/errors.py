"""Errors of the local stack, each meant to be printed to an operator as one line."""

import importlib.util
from pathlib import Path


class StackError(RuntimeError):
    """The stack could not be brought to the requested state."""


class MissingDependency(StackError):
    """A program the stack needs is not installed; the message says how to get it."""


def package_dir(name: str) -> Path | None:
    """Where an installed package lives, found without importing (and so running) it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
