"""``edge-train``: hybrid-loss (cross-entropy + triplet) training of lightweight CNNs with k-fold CV.

Heavy imports (torch, torchvision, timm) happen inside the functions that need them,
so ``edge-train --help`` is instant.
"""

from cytoedge._entry import make_callable

make_callable(__name__)  # cytoedge.train(...) is the API call (cytoedge.api.train)
