"""imgtag pipelines: image input, the tagger, and every stage that the ``imgtag`` command runs."""
