"""Import TensorFlow once, quietly.

TensorFlow 2.21 prints start-up lines from C++ (oneDNN notes, "could not find cuda
drivers", absl's "log messages before InitializeLog") before ``TF_CPP_MIN_LOG_LEVEL`` takes
effect. A user tagging a folder should not read them, so the import runs with the process's
stderr file descriptor pointed at /dev/null, unless ``IMGTAG_TF_VERBOSE`` is on: the entry
point that read the settings calls :func:`configure` before anything imports TensorFlow. Python
errors raised by the import still surface (they are raised after stderr is restored).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

_verbose = False


def configure(*, verbose: bool, threads: int | None = None) -> None:
    """Let TensorFlow's start-up lines through (``settings.tf_verbose``), or not (the default),
    and size its thread pools to ``threads`` (the cgroup's CPUs: TensorFlow counts the node's).

    Process-wide, like the import it governs; entry points call it once with their settings,
    before anything imports TensorFlow. ``TF_NUM_INTRAOP_THREADS`` and ``TF_NUM_INTEROP_THREADS``
    already set in the environment win.
    """
    global _verbose
    _verbose = verbose
    if threads:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(max(1, min(2, threads))))


@contextlib.contextmanager
def quiet_stderr():
    """Point the process's stderr file descriptor at /dev/null while the block runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """``import tensorflow`` without its C++ start-up chatter; returns the module.

    Quiet (the default) also means TensorFlow's C++ log level 3 (``TF_CPP_MIN_LOG_LEVEL``: the
    one-off "oneDNN supports DT_UINT8 only on platforms with AVX-512" line comes at the first
    uint8 op, long after the import) and its Python logger at ERROR (no "triggered tf.function
    retracing" warnings), so a stage's log is the stage's own lines.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        import tensorflow
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        with quiet_stderr():
            import tensorflow

            tensorflow.config.list_logical_devices()  # cuInit and device start-up logs, now
        tensorflow.get_logger().setLevel(logging.ERROR)
    return tensorflow
