"""The training stages: ingest, validate, version (DVC), train, evaluate, register and gate (MLflow), and
the starter model's build; each one an ``imgtag`` command that a DAG task runs."""
