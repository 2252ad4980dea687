"""Suite-wide test settings: quiet TensorFlow, and no test writes to the real ./var.

One model cache (``IMGTAG_CACHE_DIR``) serves the whole session, subprocesses included: the
starter model is exported and converted to LiteRT once, not once per test home.
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("IMGTAG_HOME", tempfile.mkdtemp(prefix="imgtag-test-home-"))
os.environ.setdefault("IMGTAG_CACHE_DIR", tempfile.mkdtemp(prefix="imgtag-test-cache-"))
