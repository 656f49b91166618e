"""Generative models for synthetic spectra: flows, GANs and a Gaussian baseline.

All implement :class:`spectraforge.generative.base.FeatureModel`; the ``generate`` stage
(:mod:`spectraforge.generative.stage`) fits one per fold on the fold's training part.
"""
