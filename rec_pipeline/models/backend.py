"""Which Keras backend this process trains on: TensorFlow (the default, and what the pipeline is tuned for), JAX
or PyTorch.

Keras reads ``KERAS_BACKEND`` once, at its first import, and cannot switch afterwards. Dagster imports no Keras
when it loads the code location, and each step of the multiprocess executor is a fresh process, so a step can
still choose: ``use_backend(name)`` sets ``KERAS_BACKEND`` when Keras is not imported yet, and otherwise checks
that the backend already running is ``name``. Either way a mismatch is one clear error naming ``KERAS_BACKEND``
instead of a model silently training on another backend. ``fit_network`` repeats the check with
``TrainOptions.backend``, so a caller that never called ``use_backend`` gets the same error.

This module imports neither Keras nor TensorFlow at module level (nor does ``rec_pipeline.models``' package
init), so it can run before the first Keras import.
"""

from __future__ import annotations

import os
import sys

from rec_pipeline.models.data import BACKENDS

DEFAULT_BACKEND = "tensorflow"


class BackendMismatch(RuntimeError):
    """Keras runs another backend than the one asked for; only a new process (with KERAS_BACKEND set) can fix it."""


def active_backend() -> str | None:
    """The backend of the Keras already imported in this process, or ``None`` if Keras is not imported yet."""
    keras = sys.modules.get("keras")
    return None if keras is None else str(keras.backend.backend())


def use_backend(name: str = DEFAULT_BACKEND) -> str:
    """Make ``name`` this process's Keras backend (before Keras is imported) or check that it already is.

    Returns ``name``; raises ``ValueError`` for an unknown name and ``BackendMismatch`` when Keras was already
    imported with another backend.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown Keras backend {name!r}; one of {', '.join(BACKENDS)}")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = name
    import keras

    check_backend(name, str(keras.backend.backend()))
    return name


def check_backend(wanted: str, running: str | None = None) -> None:
    """Raise ``BackendMismatch`` (one line, naming ``KERAS_BACKEND``) unless Keras runs ``wanted``."""
    running = running if running is not None else active_backend()
    if running is not None and running != wanted:
        raise BackendMismatch(
            f"backend={wanted!r} asked for, but Keras in this process already runs {running!r} "
            f"(KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '<unset>')}): set KERAS_BACKEND={wanted} before "
            f"Keras is first imported (a new process), or ask for backend={running!r}"
        )
