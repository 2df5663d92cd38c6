"""Evaluation metrics with the reference implementations' semantics.

* :mod:`.segmentation` - dataset-level confusion matrix, pixel acc / mean acc / mIoU in percent,
  ``empty_class="nan"`` (TokenFusion, CMX) or ``"zero"`` (DELIVER).
* :mod:`.classification` - multi-label F1 (micro/macro/weighted/samples) identical to scikit-learn,
  threshold ``p > 0.5`` as GMU / MultiBench / MMBT.
* :mod:`.image` - MAE/MSE/RMSE, Frechet distance and KID (raw; tables print KID x100) with a
  pluggable feature extractor (Inception with user-supplied pytorch-fid weights, or labelled proxies).
"""

from mango_lite.metrics.classification import binarize, multilabel_f1, multilabel_report
from mango_lite.metrics.image import (
    KID_TABLE_SCALE,
    CallableFeatures,
    FeatureExtractor,
    InceptionFeatures,
    PixelFeatures,
    RandomConvFeatures,
    extract_features,
    fid_kid,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    kernel_distance,
    kid_for_table,
    mae,
    mse,
    rmse,
)
from mango_lite.metrics.segmentation import ConfusionMatrix, scores_from_confusion, segmentation_scores

__all__ = [
    "ConfusionMatrix",
    "segmentation_scores",
    "scores_from_confusion",
    "multilabel_f1",
    "multilabel_report",
    "binarize",
    "mae",
    "mse",
    "rmse",
    "frechet_distance",
    "frechet_distance_from_stats",
    "gaussian_stats",
    "kernel_distance",
    "kid_for_table",
    "KID_TABLE_SCALE",
    "fid_kid",
    "extract_features",
    "FeatureExtractor",
    "RandomConvFeatures",
    "PixelFeatures",
    "InceptionFeatures",
    "CallableFeatures",
]
