"""Make N "Flickr-size" JPEGs (about 500x375, quality 90) from real photos, offline.

The photographic content comes from sample photos that ship inside installed packages
(matplotlib's ``grace_hopper.jpg``, scikit-learn's ``china.jpg`` and ``flower.jpg``). Each
generated file is a different random crop of one of them, resized to the target size, flipped
at random, with per-channel colour gains, a brightness shift and light sensor-like noise, so
no two files decode to the same pixels and JPEG sizes are those of real photos (~40-70 kB).

Files are written once into a cache folder, in ImageFolder layout
(``<root>/<label>/img_000123.jpg``), and reused: image ``i`` is the same whatever ``n`` is,
so a run with more images only writes the new ones.

Usage::

    python benchmarks/flickr_like.py --n-images 300            # prints the folder
"""

from __future__ import annotations

import argparse
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

#: Sentiment labels used as class folders (the library's five, in ordinal order).
LABELS = ("Highly negative", "Negative", "Neutral", "Positive", "Highly positive")


class FlickrLike(NamedTuple):
    """Generated files: paths, their labels (class folder names), and the ImageFolder root."""

    paths: list[str]
    labels: np.ndarray
    root: str


def default_data_dir() -> Path:
    """``$WJS_BENCH_DATA``, else ``~/.cache/wjsentiment-bench``."""
    env = os.environ.get("WJS_BENCH_DATA")
    return Path(env) if env else Path.home() / ".cache" / "wjsentiment-bench"


def source_photos() -> list[Image.Image]:
    """The real photos shipped with installed packages (RGB), or synthetic ones if none."""
    candidates = []
    try:
        import matplotlib

        candidates.append(Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
                          / "grace_hopper.jpg")
    except ImportError:  # pragma: no cover
        pass
    try:
        import sklearn.datasets

        images = Path(sklearn.datasets.__file__).parent / "images"
        candidates += [images / "china.jpg", images / "flower.jpg"]
    except ImportError:  # pragma: no cover
        pass
    photos = []
    for path in candidates:
        if path.is_file():
            with Image.open(path) as img:
                photos.append(img.convert("RGB"))
    if not photos:  # pragma: no cover - no sample photos installed: smooth random fields
        rng = np.random.default_rng(0)
        for _ in range(3):
            small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            photos.append(Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC))
    return photos


def render(index: int, photos: list[Image.Image], width: int, height: int, seed: int = 0,
           portrait_fraction: float = 0.2) -> Image.Image:
    """Image ``index``: a random crop of a source photo, flipped and colour-shifted."""
    rng = np.random.default_rng([seed, index])
    src = photos[int(rng.integers(len(photos)))]
    w, h = (height, width) if rng.random() < portrait_fraction else (width, height)
    aspect = w / h
    sw, sh = src.size
    area = rng.uniform(0.2, 1.0) * sw * sh
    cw = min(sw, max(16, int(round(np.sqrt(area * aspect)))))
    ch = min(sh, max(16, int(round(cw / aspect))))
    cw = min(sw, max(16, int(round(ch * aspect))))
    left = int(rng.integers(0, sw - cw + 1))
    top = int(rng.integers(0, sh - ch + 1))
    img = src.resize((w, h), Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(img, dtype=np.float32)
    gains = rng.uniform(0.75, 1.25, 3).astype(np.float32)
    shift = np.float32(rng.uniform(-30, 30))
    noise = rng.normal(0.0, 2.5, pixels.shape).astype(np.float32)
    pixels = pixels * gains + shift + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_flickr_like(
    n: int,
    data_dir: str | os.PathLike | None = None,
    *,
    width: int = 500,
    height: int = 375,
    quality: int = 90,
    portrait_fraction: float = 0.2,
    seed: int = 0,
    num_workers: int | None = None,
    verbose: bool = True,
) -> FlickrLike:
    """Make (or reuse) ``n`` JPEGs of ``width x height`` (portrait for some), in ImageFolder layout.

    Parameters
    ----------
    n : int
        Number of images; their labels cycle through :data:`LABELS`.
    data_dir : path, optional
        Cache folder (default :func:`default_data_dir`); the images go into a sub-folder named
        after the settings.
    width, height : int
        Landscape size; a ``portrait_fraction`` of the images is ``height x width``.
    quality : int
        JPEG quality.
    seed : int
        Seeds the crops and colour shifts.
    num_workers : int, optional
        Threads (default: every core).
    verbose : bool
        Say how many files were written.

    Returns
    -------
    FlickrLike
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    root = base / f"flickr_{width}x{height}_q{quality}_p{portrait_fraction:g}_s{seed}"
    labels = np.array([LABELS[i % len(LABELS)] for i in range(n)])
    paths = [str(root / labels[i] / f"img_{i:06d}.jpg") for i in range(n)]
    missing = [i for i, p in enumerate(paths) if not os.path.exists(p)]
    if missing:
        for label in LABELS:
            (root / label).mkdir(parents=True, exist_ok=True)
        photos = source_photos()

        def write(i: int) -> None:
            img = render(i, photos, width, height, seed, portrait_fraction)
            fd, tmp = tempfile.mkstemp(suffix=".jpg.tmp", dir=os.path.dirname(paths[i]))
            try:
                with os.fdopen(fd, "wb") as fh:
                    img.save(fh, format="JPEG", quality=quality)
                os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
                os.replace(tmp, paths[i])
            except BaseException:
                if os.path.exists(tmp):
                    os.remove(tmp)
                raise

        workers = num_workers or (os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(write, missing))
        if verbose:
            print(f"flickr_like: wrote {len(missing)} of {n} images into {root}")
    return FlickrLike(paths=paths, labels=labels, root=str(root))


def main(argv: list[str] | None = None) -> FlickrLike:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=int, default=300)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    made = make_flickr_like(args.n_images, args.data_dir, width=args.width, height=args.height,
                            quality=args.quality)
    sizes = [os.path.getsize(p) for p in made.paths]
    print(f"{len(made.paths)} images in {made.root}; mean file size {np.mean(sizes) / 1e3:.1f} kB")
    return made


if __name__ == "__main__":
    main()
