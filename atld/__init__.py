"""ATLD lab: train, attack and look inside adversarially robust image classifiers.

Core package. Images are float tensors in [0, 1]; ε and step sizes are in the same units
(`atld.data.registry`). Nothing here touches a GPU or the network at import time.
"""

__version__ = "0.1.0"
