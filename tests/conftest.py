"""Suite-wide test settings: quiet TensorFlow, and no test writes to the real ./var."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    if "IMGTAG_HOME" not in os.environ:
        home = config._tmp_path_factory.mktemp("imgtag-home") if hasattr(config, "_tmp_path_factory") else None
        if home is not None:
            os.environ["IMGTAG_HOME"] = str(home)
