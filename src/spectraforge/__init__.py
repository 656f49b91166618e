"""spectraforge: LAMOST spectral classification with flow- and GAN-based augmentation."""
import os

# TensorFlow's C++ INFO lines drown the pipeline's own output; warnings stay. The notices it
# writes before its logging starts (oneDNN, CUDA probing) are filtered at import (tfquiet.py).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from spectraforge import tfquiet as _tfquiet  # noqa: E402

_tfquiet.install()

__version__ = "0.1.0"
