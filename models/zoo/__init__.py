"""ONNX model generators built with onnx.helper."""
