"""Data sets and loaders for training and pruning experiments.

    from datasets import DATASET_NAMES, build_data, benchmark_loader
    data = build_data(cfg.data, seed=cfg.seed, device="cuda", rank=0, world_size=1)
    data.train.set_epoch(epoch)                 # call every epoch: order + augmentation = f(seed, epoch)
    for images, labels in data.train: ...       # float32 NCHW normalized, int64, on the device
    data.val, data.test                         # val = held-out train part if val_split > 0, else test
    data.num_classes, data.input_shape, data.classes, data.mean, data.std
    print(benchmark_loader(data.train, num_batches=50), "images/s")

See datasets/build.py for the two loader kinds (in-memory fast path, DataLoader path).
"""

from datasets.build import DATASET_NAMES, DataBundle, Loader, build_data
from datasets.loader_speed import benchmark_loader

__all__ = ["DATASET_NAMES", "DataBundle", "Loader", "benchmark_loader", "build_data"]
