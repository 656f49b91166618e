"""spectraforge: LAMOST spectral classification with flow- and GAN-based augmentation."""
import os

# TensorFlow's C++ INFO lines (oneDNN, CUDA probing) drown the pipeline's own output; warnings stay.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
