"""Datasets for training and validation: ``--data`` resolution (``data.resolve``), the offline demo (``data.demo``),
COCO-JSON conversion (``data.coco``) and the cache they share (``data.cache``)."""

from .cache import cache_root
from .coco import coco_to_yolo
from .demo import demo_config, demo_dataset, is_demo, render_demo_image
from .resolve import DataInfo, check_class_count, check_data_yaml, check_labels, resolve_data

__all__ = [
    "DataInfo",
    "cache_root",
    "check_class_count",
    "check_data_yaml",
    "check_labels",
    "coco_to_yolo",
    "demo_config",
    "demo_dataset",
    "is_demo",
    "render_demo_image",
    "resolve_data",
]
