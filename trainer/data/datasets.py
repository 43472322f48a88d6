"""Datasets of (degraded, target) pairs: random training crops, and full images for evaluation.

Items are dicts {"id", "task", "degraded", "target"} with (3, h, w) float tensors in [0, 1].
Synthesised degradations are drawn from a generator seeded by (DataConfig.seed, id) and
quantised to 8 bits, like an image stored on disk; they are cached per dataset as uint8,
since synthesis (motion kernels over a whole photo) costs more than a training step's crop.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from irpo_common.imaging import ImageError, decode_image
from trainer.config import DataConfig
from trainer.data.degradations import stable_seed, synthesize
from trainer.data.sources import DataLayoutError, SampleSpec, test_specs, train_specs
from trainer.data.variants import variants

# AdaIR's test convention: centre-crop every image to sides that are multiples of 16.
SIZE_MULTIPLE = 16


def read_image(path: Path) -> Tensor:
    """An image file as a (3, H, W) float tensor in [0, 1]."""
    try:
        arr = decode_image(path.read_bytes(), field=str(path), max_pixels=8192 * 8192)
    except ImageError as exc:
        raise DataLayoutError(str(exc)) from None
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def cut_to_multiple(img: Tensor, base: int = SIZE_MULTIPLE) -> Tensor:
    """Centre-crop (C, H, W) so that H and W are multiples of base."""
    h, w = img.shape[-2:]
    if h < base or w < base:
        raise ValueError(f"image of {h}x{w} is smaller than {base} px")
    top, left = (h % base) // 2, (w % base) // 2
    return img[..., top : top + h - h % base, left : left + w - w % base]


def centre_crop(img: Tensor, size: int) -> Tensor:
    h, w = img.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"image of {h}x{w} is smaller than the {size} px centre crop")
    top, left = (h - size) // 2, (w - size) // 2
    return img[..., top : top + size, left : left + size]


def _quantise(img: Tensor) -> Tensor:
    return (img.clamp(0, 1) * 255.0).round().to(torch.uint8)


class PairDataset(Dataset):
    """Full-size pairs (cut to multiples of 16), or their centre crops of `crop` px."""

    def __init__(self, specs: list[SampleSpec], cfg: DataConfig, crop: int | None = None):
        dup = [i for i, n in Counter(s.id for s in specs).items() if n > 1]
        if dup:
            files = sorted(str(s.degraded or s.target) for s in specs if s.id == dup[0])
            raise DataLayoutError(f"{len(dup)} duplicate sample ids: ids come from file names, which must be unique per task (and, for the OOD set, across all test targets); e.g. {dup[0]} from {files}")
        self.specs = specs
        self.seed = cfg.seed
        self.crop = crop
        self._variants = {False: variants(cfg), True: variants(cfg, ood=True)}
        self._cache: dict[str | Path, Tensor] = {}  # uint8 targets by path, degraded images by id

    def __len__(self) -> int:
        return len(self.specs)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.specs]

    def pair(self, index: int) -> tuple[Tensor, Tensor]:
        degraded, target = self._full_pair(self.specs[index])
        if self.crop is None:
            return degraded, target
        return centre_crop(degraded, self.crop), centre_crop(target, self.crop)

    def _full_pair(self, spec: SampleSpec) -> tuple[Tensor, Tensor]:
        if spec.degraded is not None:
            target = cut_to_multiple(read_image(spec.target))
            degraded = cut_to_multiple(read_image(spec.degraded))
            if degraded.shape != target.shape:
                raise DataLayoutError(f"{spec.id}: input {tuple(degraded.shape)} and target {tuple(target.shape)} differ in size")
            return degraded, target
        if spec.target not in self._cache:
            self._cache[spec.target] = _quantise(cut_to_multiple(read_image(spec.target)))
        target = self._cache[spec.target].float() / 255.0
        if spec.id not in self._cache:
            degrade = self._variants[spec.ood][spec.task][spec.variant]
            self._cache[spec.id] = _quantise(synthesize(target, degrade, stable_seed(self.seed, spec.id)))
        return self._cache[spec.id].float() / 255.0, target

    def __getitem__(self, index: int) -> dict:
        degraded, target = self.pair(index)
        spec = self.specs[index]
        return {"id": spec.id, "task": spec.task, "degraded": degraded, "target": target}


class CropDataset(PairDataset):
    """Random crop_size crops with a random flip/rotation (the 8 symmetries of the square); aligned faces are only
    mirrored (GFPGAN's use_hflip: an upside-down face is not an aligned face).

    The draw depends on (seed, id, epoch): reproducible across runs and processes; call
    set_epoch(e) each epoch for fresh crops.
    """

    def __init__(self, specs: list[SampleSpec], cfg: DataConfig, crop_size: int | None = None):
        super().__init__(specs, cfg)
        self.crop_size = crop_size or cfg.crop_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        degraded, target = self.pair(index)
        spec = self.specs[index]
        c = self.crop_size
        h, w = target.shape[-2:]
        if h < c or w < c:
            raise DataLayoutError(f"{spec.id}: image of {h}x{w} is smaller than the {c} px crop")
        g = torch.Generator().manual_seed(stable_seed(self.seed, spec.id, self.epoch))
        top = int(torch.randint(0, h - c + 1, (), generator=g))
        left = int(torch.randint(0, w - c + 1, (), generator=g))
        k, flip = int(torch.randint(0, 4, (), generator=g)), bool(torch.randint(0, 2, (), generator=g))
        k = 0 if spec.task == "face" else k
        out = []
        for img in (degraded, target):
            img = torch.rot90(img[:, top : top + c, left : left + c], k, dims=(1, 2))
            out.append((img.flip(-1) if flip else img).contiguous())
        return {"id": spec.id, "task": spec.task, "degraded": out[0], "target": out[1]}


def build_train_dataset(cfg: DataConfig, ids: list[str] | None = None, crop_size: int | None = None) -> CropDataset:
    """Training crops; `ids` restricts to those samples (e.g. the mined subset), in the given order."""
    specs = train_specs(cfg)
    if ids is not None:
        by_id = {s.id: s for s in specs}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise DataLayoutError(f"{len(unknown)} ids are not in the training set of {cfg.source} at {cfg.root} (first: {unknown[:3]})")
        specs = [by_id[i] for i in ids]
    return CropDataset(specs, cfg, crop_size)


def build_full_train_set(cfg: DataConfig, crop: int | None = None) -> PairDataset:
    """Every training pair, whole or centre-cropped, in a fixed order (for scoring and mining)."""
    return PairDataset(train_specs(cfg), cfg, crop)


def build_eval_sets(cfg: DataConfig, ood: bool = False, crop: int | None = None) -> dict[str, PairDataset]:
    """Column -> dataset of full test images (or their centre crops of `crop` px). Columns are the tasks, except that a task with
    several variants (denoising at each sigma) gets one column per variant: 'denoise_sigma15'."""
    groups: dict[str, list[SampleSpec]] = {}
    specs = test_specs(cfg, ood=ood)
    variants_per_task = Counter(task for task, _ in {(s.task, s.variant) for s in specs})
    for s in specs:
        key = f"{s.task}_{s.variant}" if variants_per_task[s.task] > 1 else s.task
        groups.setdefault(key, []).append(s)
    return {key: PairDataset(group, cfg, crop) for key, group in groups.items()}
