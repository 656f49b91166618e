"""Losses for the classifier, as pure functions of (y_true, y_pred)."""
from __future__ import annotations

import keras
from keras import ops

EPS = 1e-7


@keras.saving.register_keras_serializable(package="spectraforge")
def macro_f1_loss(y_true, y_pred, eps: float = EPS):
    """Soft macro-F1 loss over the batch (kexue.fm/archives/5505, Su Jianlin 2018).

        L = −log( (1/K) Σ_c  2·Σ_b y_bc·p_bc / Σ_b (y_bc + p_bc + ε) )

    with y one-hot (B, K) and p the predicted probabilities (B, K). Replacing the hard
    counts of F1 = 2TP / (2TP + FP + FN) = 2TP / (#true + #predicted) by their soft
    versions Σ y·p and Σ (y + p) makes it differentiable. It is a statistic of the whole
    batch (a scalar), so the batch must hold every class: balanced sampling provides that.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    tp = ops.sum(y_true * y_pred, axis=0)
    denom = ops.sum(y_true + y_pred + eps, axis=0)
    soft_f1 = ops.mean(2.0 * tp / denom)
    # guard only against an all-zero batch (float underflow); no effect on ordinary values
    return -ops.log(ops.maximum(soft_f1, eps))


# cross-entropy −Σ_c y_c log p_c per sample (Keras reduces it over the batch)
LOSSES = {"crossentropy": keras.losses.categorical_crossentropy, "macro_f1": macro_f1_loss}


def get_loss(name: str):
    """The loss function called ``name`` (one of LOSSES)."""
    if name not in LOSSES:
        raise ValueError(f"loss '{name}' is not one of: {', '.join(LOSSES)}")
    return LOSSES[name]
