"""The GAN family (SEEDS §4–7): networks, losses, training modes and the FeatureModel.

    from spectraforge.generative.gan import GANConfig, GANModel, LOSSES
"""
from spectraforge.generative.gan.losses import LOSSES, GANLoss, get_loss
from spectraforge.generative.gan.model import GANConfig, GANModel
from spectraforge.generative.gan.training import MODES, GANTrainer

__all__ = ["LOSSES", "MODES", "GANConfig", "GANLoss", "GANModel", "GANTrainer", "get_loss"]
