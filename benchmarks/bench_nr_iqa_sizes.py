"""Monotone share (worse with each step of noise, blur and JPEG) of BRISQUE, NIQE and PIQE vs image size.

Each photo is resized to short side 512 (LANCZOS), then centre-cropped to side x side for each size;
devtools/nr_iqa_monotone.py defines the cases (3 degradations x 3 steps per photo).

Usage: .venv/bin/python benchmarks/bench_nr_iqa_sizes.py --photos DIR [--sizes 64 96 ...] [--limit N]
       .venv/bin/python benchmarks/bench_nr_iqa_sizes.py --skimage-unused [--sizes 128]
`--photos` takes every *.png under DIR (e.g. the demo corpus fetched with --short-side 768);
`--skimage-unused` takes scikit-image's bundled photos that the demo corpus does not use.
Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from devtools.nr_iqa_monotone import centre_square, rises  # noqa: E402
from reward_server.nr_iqa import Brisque, Niqe, Piqe, niqe  # noqa: E402

# scikit-image's bundled photos that trainer/demo/corpus.py does not use (grey ones as RGB)
SKIMAGE_UNUSED = ("camera", "moon", "coins", "brick", "grass", "gravel", "stereo_motorcycle", "immunohistochemistry", "cell", "retina")


def skimage_photos() -> list[Image.Image]:
    out = []
    for name in SKIMAGE_UNUSED:
        a = getattr(data, name)()
        for view in a[:2] if isinstance(a, tuple) else (a,):  # the stereo pair: both views (not the disparity)
            view = np.asarray(view)
            out.append(Image.fromarray(np.repeat(view[..., None], 3, -1) if view.ndim == 2 else view[..., :3]))
    return out


def at_short_side(img: Image.Image, side: int) -> Image.Image:
    s = side / min(img.size)
    return img if s >= 1 else img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.LANCZOS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--photos", type=Path)
    src.add_argument("--skimage-unused", action="store_true")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 192, 256, 384, 512])
    p.add_argument("--limit", type=int, default=0, help="use the first N photos (0: all)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    photos = skimage_photos() if args.skimage_unused else [Image.open(f).convert("RGB") for f in sorted(args.photos.rglob("*.png"))]
    photos = [at_short_side(im, 512) for im in photos[: args.limit or None]]
    metrics = {"brisque": Brisque(), "niqe": Niqe(), "piqe": Piqe()}
    for side in args.sizes:
        usable = [centre_square(im, side) for im in photos if min(im.size) >= side]
        ms = {k: m for k, m in metrics.items() if k != "niqe" or niqe.size_error(side, side) is None}
        r = rises(usable, ms)
        out = {"side": side, "photos": len(usable), "cases": len(usable) * 9,
               **{k: round(sum(v) / len(v), 3) if v else None for k, v in r.items()}, "loadavg_1min": round(os.getloadavg()[0], 2)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
