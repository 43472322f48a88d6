"""Face crops for the face smoke run, from what scikit-image's wheel ships (nothing is downloaded, nothing committed).

- scikit-image's `astronaut` (Eileen Collins, NASA; public domain: "no known copyright restrictions"): her face,
  boxed by scikit-image's own LBP frontal-face cascade (shipped beside it) and widened to an FFHQ-like crop with
  hair and chin; a sharp ground truth, kept for the test set.
- scikit-image's `lfw_subset`: 100 grayscale 25 x 25 face crops from Labeled Faces in the Wild (Huang et al.;
  web photos of public figures, redistributed in the scikit-image wheel, BSD-3-Clause; LFW states no licence of
  its own). Upscaled to the face size they are soft, small real faces: training faces, a few test faces, and
  a real-world set without ground truth.

Writes root/{train,test,real}/*.png of size x size px (the face layouts of trainer/data/sources.py) and
root/faces.json (files and sources).

    python -m trainer.demo.face_corpus --root data/faces --size 64
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = {"train": range(0, 48), "test": range(48, 53), "real": range(60, 68)}  # indices of lfw_subset's faces (0-99)
MANIFEST = "faces.json"
SOURCES = {
    "astronaut": "scikit-image data.astronaut (NASA, public domain)",
    "lfw": "scikit-image data.lfw_subset (Labeled Faces in the Wild crops, 25 x 25 grayscale; shipped in the BSD-3-Clause wheel)",
}


def astronaut_face(size: int) -> Image.Image:
    """The astronaut's face, boxed by scikit-image's LBP cascade and widened 1.8x around its centre."""
    from skimage import data, feature

    img = data.astronaut()
    cascade = feature.Cascade(data.lbp_frontal_face_cascade_filename())
    found = cascade.detect_multi_scale(img=img, scale_factor=1.2, step_ratio=1, min_size=(60, 60), max_size=(300, 300))
    if len(found) != 1:
        raise RuntimeError(f"expected one face in scikit-image's astronaut, the cascade found {len(found)}")
    box = found[0]
    cy, cx = box["r"] + box["height"] / 2, box["c"] + box["width"] / 2
    half = 0.9 * max(box["height"], box["width"])
    crop = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    return Image.fromarray(img).crop(crop).resize((size, size), Image.Resampling.LANCZOS)


def lfw_faces(size: int) -> list[Image.Image]:
    from skimage import data

    faces = (data.lfw_subset()[:100] * 255.0).round().astype(np.uint8)  # the first 100 are faces
    return [Image.fromarray(f).convert("RGB").resize((size, size), Image.Resampling.BICUBIC) for f in faces]


def fetch_faces(root: Path, size: int = 64) -> dict:
    """Write the three folders (reused when root/faces.json says the same size); returns the manifest."""
    root = Path(root)
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("size") == size and all((root / f).is_file() for f in manifest["files"]):
            return manifest | {"reused": True}
    lfw = lfw_faces(size)
    files = []
    for split, indices in SPLITS.items():
        shutil.rmtree(root / split, ignore_errors=True)
        (root / split).mkdir(parents=True)
        for i in indices:
            lfw[i].save(root / split / f"lfw{i:03d}.png")
            files.append(f"{split}/lfw{i:03d}.png")
    astronaut_face(size).save(root / "test" / "astronaut.png")
    files.append("test/astronaut.png")
    manifest = {"size": size, "files": files, "sources": SOURCES}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest | {"reused": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("data/faces"))
    parser.add_argument("--size", type=int, default=64, help="Side of the square face crops (px).")
    args = parser.parse_args(argv)
    m = fetch_faces(args.root, args.size)
    counts = {s: sum(f.startswith(s + "/") for f in m["files"]) for s in ("train", "test", "real")}
    print(f"[face corpus] {counts} faces of {args.size} px {'already present' if m['reused'] else 'written'} under {args.root}; sources: "
          + "; ".join(m["sources"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
