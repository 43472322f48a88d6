"""Training and evaluation data: synthesised degradations, AdaIR/paired folder loaders, the post-training set and its order."""

from trainer.data.datasets import CropDataset, PairDataset, build_eval_sets, build_full_train_set, build_train_dataset, read_image
from trainer.data.sources import DataLayoutError, SampleSpec

__all__ = ["CropDataset", "PairDataset", "build_eval_sets", "build_full_train_set", "build_train_dataset", "read_image", "DataLayoutError", "SampleSpec"]
