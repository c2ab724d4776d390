"""Segmentation models: R2U-Net, HARU-Net, their lite variants and a ResNet-50 U-Net.

Every model takes N×3×H×W RGB in [0, 1] (H and W multiples of
``model.size_multiple``, 32), normalises it internally and returns
``(mask_logits, contour_logits)`` in eval mode, each N×1×H×W; in training mode
it also returns a list of deep-supervision side outputs.

Examples
--------
>>> import torch
>>> from napari_ihcseg.models import build_model, list_models
>>> list_models()
['r2unet', 'r2unet-lite', 'harunet', 'harunet-lite', 'unet-resnet50']
>>> model = build_model("harunet-lite").eval()
>>> mask_logits, contour_logits = model(torch.rand(1, 3, 64, 64))
>>> tuple(mask_logits.shape)
(1, 1, 64, 64)
"""

from ._base import SIZE_MULTIPLE, ModelConfig, SegmentationModel, padded_size
from .checkpoint import CheckpointInfo, load_checkpoint, read_checkpoint_config, save_checkpoint, set_classifier, set_instance_params
from .harunet import HARUNet, HARUNetConfig
from .r2unet import R2UNet, R2UNetConfig
from .registry import build_model, get_spec, list_models
from .shipped import (
    checkpoint_classifiers_stamp,
    checkpoint_sha256,
    classifiers_stamp,
    default_checkpoint_name,
    load_model,
    recommended_classifier,
    recommended_instance_params,
    shipped_checkpoints,
)
from .unet_resnet import UNetResNet, UNetResNetConfig

__all__ = [
    "SIZE_MULTIPLE",
    "CheckpointInfo",
    "HARUNet",
    "HARUNetConfig",
    "ModelConfig",
    "R2UNet",
    "R2UNetConfig",
    "SegmentationModel",
    "UNetResNet",
    "UNetResNetConfig",
    "build_model",
    "checkpoint_classifiers_stamp",
    "checkpoint_sha256",
    "classifiers_stamp",
    "default_checkpoint_name",
    "get_spec",
    "list_models",
    "load_checkpoint",
    "load_model",
    "padded_size",
    "read_checkpoint_config",
    "recommended_classifier",
    "recommended_instance_params",
    "save_checkpoint",
    "set_classifier",
    "set_instance_params",
    "shipped_checkpoints",
]
