"""Normalizing flows: bijective layers, NICE / RealNVP / Glow recipes, the flow feature model."""
