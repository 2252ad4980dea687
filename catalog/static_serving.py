"""Static files through WhiteNoise, quiet about a ``STATIC_ROOT`` nobody collected into.

The catalog serves its CSS and JS (and the admin's) from the apps' ``static/`` folders
(``WHITENOISE_USE_FINDERS``); ``STATIC_ROOT`` is only used when ``collectstatic`` has filled
it, so its absence is the normal case rather than a warning at every start.
"""

from __future__ import annotations

import os

from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    def add_files(self, root, prefix=None) -> None:
        if self.autorefresh or os.path.isdir(root):
            super().add_files(root, prefix)
