"""The model at run time: its settings, the onnxruntime session, its contract and its file on disk."""
