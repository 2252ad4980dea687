-- Run once by the postgres image's entrypoint, when the data directory is initialised.
-- MLflow's backend store (MLFLOW_BACKEND_STORE_URI in imgtag-secrets.env).
CREATE DATABASE mlflow OWNER imgtag;
