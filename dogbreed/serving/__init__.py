"""Serving: the `model/` artifact, ONNX/int8 export, `model.tar.gz`, the SageMaker handler, the local
endpoint and the predict command. Importable without Lightning: the handler ships inside `model.tar.gz`."""
