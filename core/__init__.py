"""The imgtag core: what every layer above shares.

Image input (``imageio``), the backbone and the two-headed Keras model (``backbone``,
``model``), the tag map and vocabulary (``tagmap``, ``vocabulary``), the tagger engine
(``tagger``), settings, errors and exit codes, Prometheus metrics and the RabbitMQ broker.
Nothing here imports ``serving``, ``catalog`` or ``pipelines``: the layers above import the
core, never the other way (``make test`` checks it with import-linter).
"""
