"""The catalog's web pages: sign-in, gallery and search, asset page, bulk upload, thresholds.

Views are thin (:mod:`catalog.web.views`); the work is done by :mod:`catalog.services`,
:mod:`catalog.facets`, :mod:`catalog.thumbnails` and :mod:`catalog.thresholds`. The pages'
JavaScript talks to the REST API (``/api/``) with the session and its CSRF token.
"""
