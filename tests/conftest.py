"""Suite-wide test settings: quiet TensorFlow, and no test writes to the real ./var."""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("IMGTAG_HOME", tempfile.mkdtemp(prefix="imgtag-test-home-"))
