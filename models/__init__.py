"""Model zoo: ONNX generators (no torch), pytorchcv exports and samples."""
