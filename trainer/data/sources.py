"""Which (degraded, target) pairs exist: the demo corpus, AdaIR's folder layout, or paired folders.

A SampleSpec names one pair by a stable id ("task/variant/name" when synthesised, "task/name"
when read from files); mining writes these ids and the trainer reads them back, so they depend
only on file names and settings, never on listing order or run.

Layouts (under DataConfig.root):
- demo:   train/*.png, test/*.png clean photos (scripts/fetch_demo_photos.sh); every task is
          synthesised from them.
- adair:  AdaIR's layout. Train/Denoise/* (clean; noise synthesised at each sigma),
          Train/Derain/{rainy,gt} (rain-N / norain-N), Train/Dehaze/{synthetic/**,original}
          (hazy NAME_a_b.ext -> NAME.ext), Train/Deblur/{blur,sharp}, Train/Enhance/{low,gt};
          test/denoise/bsd68/*, test/derain/Rain100L/{input,target},
          test/dehaze/{input,target} (NAME_x -> NAME), test/deblur/gopro/{input,target},
          test/enhance/lol/{input,target}. AdaIR's list files (rainTrain.txt, ...) are not
          needed: the folders are scanned.
- paired: {train,test}/<task>/{input,target}, pairs matched by file name.
- face:   blind face restoration (task 'face'), aligned square faces of data.face.size px.
          train/: an FFHQ-style folder of clean faces, degraded by the BFR model (trainer/data/face.py);
          test/: CelebA-Test-style synthetic pairs test/{input,target} (matched by file name), or a folder
          of clean faces degraded with fixed seeds. Real-world sets without ground truth (LFW-Test,
          WebPhoto-Test) are folders of faces named in data.face.real_world (real_world_sets).
OOD sets are always synthesised from the clean test targets with the OOD variants.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from trainer.config import DataConfig
from trainer.data.degradations import training_variants
from trainer.data.variants import variants

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}  # what the shared codec (irpo_common.imaging) decodes


class DataLayoutError(ValueError):
    """A dataset folder is missing or malformed; the message names the path."""


@dataclass(frozen=True)
class SampleSpec:
    id: str
    task: str
    target: Path
    degraded: Path | None = None  # a file, or None when synthesised
    variant: str | None = None  # the degradation variant when synthesised
    ood: bool = False


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataLayoutError(f"folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _synthetic(task: str, clean: list[Path], table: dict[str, dict], ood: bool = False) -> list[SampleSpec]:
    return [SampleSpec(f"{task}/{v}/{p.stem}", task, p, variant=v, ood=ood) for v in table[task] for p in clean]


def _pairs(task: str, inputs: Path, targets: Path, target_name=lambda stem: stem) -> list[SampleSpec]:
    by_stem = {p.stem: p for p in list_images(targets)}
    specs = []
    for p in list_images(inputs):
        stem = target_name(p.stem)
        if stem not in by_stem:
            raise DataLayoutError(f"{p}: no target named {stem}.* in {targets}")
        specs.append(SampleSpec(f"{task}/{p.stem}", task, by_stem[stem], degraded=p))
    return specs


def _before_underscore(stem: str) -> str:
    return stem.split("_")[0]


def _adair_train(root: Path, task: str, cfg: DataConfig) -> list[SampleSpec]:
    t = root / "Train"
    if task == "denoise":
        return _synthetic(task, list_images(t / "Denoise"), training_variants(cfg.noise_sigmas))
    if task == "derain":
        return _pairs(task, t / "Derain" / "rainy", t / "Derain" / "gt", lambda s: "norain-" + s.split("rain-")[-1])
    if task == "dehaze":
        return _pairs(task, t / "Dehaze" / "synthetic", t / "Dehaze" / "original", _before_underscore)
    if task == "deblur":
        return _pairs(task, t / "Deblur" / "blur", t / "Deblur" / "sharp")
    return _pairs(task, t / "Enhance" / "low", t / "Enhance" / "gt")


_ADAIR_TEST = {"derain": "derain/Rain100L", "dehaze": "dehaze", "deblur": "deblur/gopro", "lowlight": "enhance/lol"}


def _adair_test(root: Path, task: str, cfg: DataConfig) -> list[SampleSpec]:
    if task == "denoise":
        return _synthetic(task, list_images(root / "test" / "denoise" / "bsd68"), training_variants(cfg.noise_sigmas))
    base = root / "test" / _ADAIR_TEST[task]
    return _pairs(task, base / "input", base / "target", _before_underscore if task == "dehaze" else (lambda s: s))


def _demo_photos(folder: Path) -> list[Path]:
    photos = list_images(folder) if folder.is_dir() else []
    if not photos:
        raise DataLayoutError(f"no photos in {folder}: run scripts/fetch_demo_photos.sh (or set data.root)")
    return photos


def _check_faces(files: list[Path], size: int) -> list[Path]:
    """Aligned faces are square crops of data.face.size px (read from the headers only)."""
    for p in files:
        with Image.open(p) as img:
            if img.size != (size, size):
                raise DataLayoutError(f"{p}: {img.size[0]}x{img.size[1]}, expected an aligned {size}x{size} face (data.face.size)")
    return files


def _face_folder(folder: Path, size: int, what: str) -> list[Path]:
    """A flat folder of aligned faces; a paired layout (input/, target/) in its place is an error."""
    paired = [d.name for d in (folder / "input", folder / "target") if d.is_dir()]
    if paired:
        raise DataLayoutError(f"{folder} holds {'/'.join(paired)}/: {what} is a folder of face images, not input/ + target/ pairs")
    faces = list_images(folder)
    if not faces:
        raise DataLayoutError(f"no face images (.png/.jpg) in {folder} ({what})")
    return _check_faces(faces, size)


def _face_specs(cfg: DataConfig, split: str) -> list[SampleSpec]:
    root, size = Path(cfg.root) / split, cfg.face.size
    if split == "test" and ((root / "input").is_dir() or (root / "target").is_dir()):  # CelebA-Test style
        stray = [p for p in list_images(root) if p.parent.name not in ("input", "target") or p.parent.parent != root]
        if stray:
            raise DataLayoutError(f"{root}: CelebA-Test-style pairs hold images in input/ and target/ only; found {stray[0]}")
        specs = _pairs("face", root / "input", root / "target")
        _check_faces([p for s in specs for p in (s.target, s.degraded)], size)
        return specs
    what = "the FFHQ-style training set" if split == "train" else "the test set (clean faces; or CelebA-Test-style input/ + target/)"
    return _synthetic("face", _face_folder(root, size, what), variants(cfg))


def real_world_sets(cfg: DataConfig) -> dict[str, list[Path]]:
    """data.face.real_world: set name -> its face images (no ground truth: no-reference evaluation only)."""
    return {name: _face_folder(Path(folder), cfg.face.size, f"real-world set {name!r}") for name, folder in cfg.face.real_world.items()}


def _split_specs(cfg: DataConfig, split: str) -> list[SampleSpec]:
    root = Path(cfg.root)
    if cfg.source == "face":
        return _face_specs(cfg, split)
    if cfg.source == "demo":
        clean = _demo_photos(root / split)
        table = variants(cfg)
        return [s for task in cfg.tasks for s in _synthetic(task, clean, table)]
    if cfg.source == "adair":
        adair = _adair_train if split == "train" else _adair_test
        return [s for task in cfg.tasks for s in adair(root, task, cfg)]
    return [s for task in cfg.tasks for s in _pairs(task, root / split / task / "input", root / split / task / "target")]


def train_specs(cfg: DataConfig) -> list[SampleSpec]:
    return _split_specs(cfg, "train")


def test_specs(cfg: DataConfig, ood: bool = False) -> list[SampleSpec]:
    if ood:
        clean = sorted({s.target for s in test_specs(cfg)})
        return [s for task in cfg.tasks for s in _synthetic(task, clean, variants(cfg, ood=True), ood=True)]
    return _split_specs(cfg, "test")
