"""imgtag serving: model export and predictor clients (in process, TF Serving REST and gRPC)."""
