"""Tagging into the catalog: ``imgtag import`` (a folder, in process), the queue worker (RabbitMQ), and
requeueing assets for a new model."""
