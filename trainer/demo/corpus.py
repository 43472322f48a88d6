"""Fetch the demo corpus: real photos, downscaled, split into train/ and test/ under a root folder.

Sources (all offline-capable on these machines): scikit-image's bundled photos (public domain /
CC0) and photos from Debian packages, fetched with `apt-get download` at setup time and never
committed: lomiri-wallpapers-16.04 (CC-BY/CC-BY-SA/CC0 per file, see its debian/copyright),
lomiri-wallpapers-20.04 (its one photograph, CC-BY-SA-3.0), mate-backgrounds (nature photos,
GPL-2+) and the colour photographs among OpenCV's sample images in opencv-doc (Apache-2.0 AND
BSD-3-Clause; the Debian repack drops the non-free ones). Abstract wallpapers, drawings, text and
pre-blurred/noisy copies are left out. plasma-workspace-wallpapers is NOT used: it is kept for
independent checks of this project. Without apt the corpus is the skimage photos only, and the
output says so.

    python -m trainer.demo.corpus --root data/demo [--short-side 256]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
# package -> (folder inside the package, which files: ("skip", names that are not photographs) or ("only", the photographs))
DEBIAN_PHOTOS = {
    "lomiri-wallpapers-16.04": ("usr/share/backgrounds", ("skip", {"analogpattern_by_Peter_Nerlich", "umang_by_Abhishek_Mudgal"})),
    "lomiri-wallpapers-20.04": ("usr/share/backgrounds", ("only", {"Kleiber_by_Lukas_Baubkus"})),
    "mate-backgrounds": ("usr/share/backgrounds/mate/nature", ("skip", set())),
    # one of each stereo/pair set; not the logos, charts, text, painting or motion-blurred plate
    "opencv-doc": ("usr/share/doc/opencv-doc/examples/data", ("only", {
        "aero1", "aloeL", "apple", "baboon", "board", "building", "butterfly", "ela_original", "fruits", "graf1",
        "home", "leuvenA", "messi5", "orange", "rubberwhale1", "smarties", "squirrel_cls", "stuff"})),
}
# every 3rd photo (sorted by name) is held out for testing: 15 of the 46 photos, so that intervals over test photos
# (the sampling unit) have >= 12 of them in distribution and OOD
TEST_EVERY = 3
SHORT_SIDE = 256  # default downscale: the short side of every photo at most this (px)
MANIFEST = "corpus.json"


def _downscale(img: Image.Image, short_side: int) -> Image.Image:
    img = img.convert("RGB")
    scale = short_side / min(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    return img


def _skimage_photos() -> dict[str, Image.Image]:
    from skimage import data

    return {name: Image.fromarray(np.asarray(getattr(data, name)())) for name in SKIMAGE_PHOTOS}


def _debian_photos(workdir: Path) -> tuple[dict[str, Path], list[str]]:
    """(name -> file, problems); a package that cannot be fetched is reported, not fatal."""
    photos: dict[str, Path] = {}
    problems = []
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return photos, ["apt-get/dpkg-deb not found"]
    for package, (folder, (rule, names)) in DEBIAN_PHOTOS.items():
        where = workdir / package  # one folder per package: two of them unpack into usr/share/backgrounds
        where.mkdir()
        run = subprocess.run(["apt-get", "download", package], cwd=where, capture_output=True, text=True)
        debs = sorted(where.glob(f"{package}_*.deb"))
        if run.returncode != 0 or not debs:
            problems.append(f"apt-get download {package} failed: {run.stderr.strip().splitlines()[-1:] or run.returncode}")
            continue
        tar = subprocess.run(f"dpkg-deb --fsys-tarfile {debs[0].name} | tar -x ./{folder}/", shell=True, cwd=where, capture_output=True, text=True)
        if tar.returncode != 0:
            problems.append(f"extracting {debs[0].name} failed: {tar.stderr.strip()}")
            continue
        for f in sorted((where / folder).iterdir()):
            if f.suffix.lower() in (".jpg", ".jpeg", ".png") and (f.stem in names) == (rule == "only"):
                photos[f.stem] = f
    return photos, problems


def _write_manifest(root: Path, short_side: int, files: list[str], problems: list[str], kind: str) -> dict:
    """root/corpus.json: what fetch() reuses when the settings and files still match."""
    manifest = {"kind": kind, "short_side": short_side, "files": files, "debian_packages": kind == "photos" and not problems, "problems": problems, "reused": False}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def describe(manifest: dict) -> str:
    n_test = sum(f.startswith("test/") for f in manifest["files"])
    kind = manifest.get("kind", "photos")  # manifests written before the kind was recorded hold photos
    what = {"photos": "photos", "stand-in": "STAND-IN images (synthetic, not photos)"}[kind]
    fallback = "" if kind != "photos" or manifest["debian_packages"] else " (scikit-image photos only: " + "; ".join(manifest["problems"]) + ")"
    return f"{len(manifest['files']) - n_test} training + {n_test} test {what}{fallback}"


def fetch(root: Path, short_side: int = SHORT_SIDE) -> dict:
    """Write root/train/*.png and root/test/*.png; returns the manifest also written to root/corpus.json."""
    root = Path(root)
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("short_side") == short_side and all((root / p).is_file() for p in manifest["files"]):
            manifest["reused"] = True
            return manifest
    images = {f"skimage_{k}": v for k, v in _skimage_photos().items()}
    with tempfile.TemporaryDirectory() as tmp:
        files, problems = _debian_photos(Path(tmp))
        for name, path in files.items():
            images[f"deb_{name}"] = Image.open(path)
        for split in ("train", "test"):
            shutil.rmtree(root / split, ignore_errors=True)
            (root / split).mkdir(parents=True)
        written = []
        for i, name in enumerate(sorted(images)):
            split = "test" if i % TEST_EVERY == TEST_EVERY - 1 else "train"
            rel = f"{split}/{name}.png"
            _downscale(images[name], short_side).save(root / rel)
            written.append(rel)
    return _write_manifest(root, short_side, written, problems, "photos")


def write_standin_corpus(root: Path, n_train: int = 3, n_test: int = 2, size: tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    """A stand-in corpus in the demo layout (smooth random colour images with edges) with its manifest,
    for tests and smoke runs that must not depend on the fetched photos; fetch() then reuses it."""
    g = np.random.default_rng(seed)
    h, w = size
    files = []
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            coarse = Image.fromarray(g.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
            arr = np.asarray(coarse).copy()
            arr[h // 3 : h // 3 + 3] = 255 - arr[h // 3 : h // 3 + 3]  # a sharp stripe: something for blur to remove
            Image.fromarray(arr).save(root / split / f"img{i}.png")
            files.append(f"{split}/img{i}.png")
    _write_manifest(root, max(SHORT_SIDE, min(size)), files, [], "stand-in")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("data/demo"))
    parser.add_argument("--short-side", type=int, default=SHORT_SIDE, help="Downscale so the short side is at most this (px).")
    args = parser.parse_args(argv)
    m = fetch(args.root, args.short_side)
    state = "already present" if m["reused"] else "written"
    print(f"[demo corpus] {describe(m)} {state} under {args.root} (short side <= {m['short_side']} px)")
    if m["problems"]:
        print("[demo corpus] WARNING: Debian photo packages unavailable, falling back to the scikit-image photos only: " + "; ".join(m["problems"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
