"""``python -m pipelines.cli``: the ``imgtag`` command (the tests and the pods' health check run it so)."""

from pipelines.cli import main

main()
