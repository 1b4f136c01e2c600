"""Write the shipped test samples (checkpoints/samples/*.npz) and their README from the real data.

    pip install -e .   # once, so that `atld` imports
    python checkpoints/make_samples.py --data-root ../shared/data

MNIST and Fashion-MNIST: the first 2,000 images of the official test split; cifar10-exact: the
first 500 of its 1,017 test images (= the official CIFAR-10 test split's first 500: colour images
compress badly, and 500 keep the file near 1.4 MB, under the 2 MB we allow a shipped file). The format is
`atld.data.samples`; every written file is read back through `read_sample` and its sha256 goes
into samples/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from atld.data.loaders import load_dataset
from atld.data.samples import MAX_SAMPLE_IMAGES, read_sample, sample_path

OUT = Path(__file__).resolve().parent / "samples"

COUNTS = {"mnist": MAX_SAMPLE_IMAGES, "fashion-mnist": MAX_SAMPLE_IMAGES, "cifar10-exact": 500}
SOURCES = {
    "mnist": ("MNIST, Y. LeCun, C. Cortes, C. J. C. Burges, http://yann.lecun.com/exdb/mnist/",
              "CC BY-SA 3.0, as commonly stated for MNIST (Yann LeCun's site)"),
    "fashion-mnist": ("Fashion-MNIST, H. Xiao, K. Rasul, R. Vollgraf (Zalando Research), arXiv:1708.07747, "
                      "https://github.com/zalandoresearch/fashion-mnist", "MIT licence"),
    "cifar10-exact": ("CIFAR-10, A. Krizhevsky, \"Learning Multiple Layers of Features from Tiny Images\", 2009, "
                      "https://www.cs.toronto.edu/~kriz/cifar.html",
                      "the CIFAR-10 terms on that page (cite the technical report when you use it)"),
}

HEADER = """# Shipped test samples

Small real test samples, so the app shows real images offline at once. The app uses a sample only
when the full data set is not under its data root (ATLD_DATA_ROOT, else ~/.cache/atld/data); every
number it computes on one says "on the shipped sample of N test images". Training needs the full
data (the app's Home page downloads MNIST and Fashion-MNIST; `python -m atld train --data-root
DIR --download` does too).

Made by `python checkpoints/make_samples.py --data-root ../shared/data` from verified copies of
the datasets. Format (`atld/data/samples.py`): `np.savez_compressed` with `images` (uint8, N×C×H×W),
`labels` (int64) and `source_indices` (int64: each image's index in the official test split).

| file | images | which test images | source | licence / terms | sha256 |
|---|---|---|---|---|---|
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder holding mnist/, fashion-mnist/, cifar10/exact/")
    args = parser.parse_args()
    root = Path(args.data_root)
    OUT.mkdir(exist_ok=True)
    rows = []
    for name, (source, terms) in SOURCES.items():
        data = load_dataset(name, root)
        n = min(COUNTS[name], len(data.y_test))
        images = data.x_test[:n].numpy()
        if images.dtype != np.uint8:
            raise SystemExit(f"{name}: expected uint8 images, got {images.dtype}")
        path = sample_path(name, OUT)
        np.savez_compressed(path, images=np.ascontiguousarray(images), labels=data.y_test[:n].numpy().astype(np.int64),
                            source_indices=np.arange(n, dtype=np.int64))
        read_sample(path, data.spec)  # the file passes the app's own checks
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append(f"| `{path.name}` | {n:,} | 0..{n - 1} | {source} | {terms} | `{digest}` |")
        print(f"{path.name}: {n} images, {path.stat().st_size:,} bytes, sha256 {digest}")
    (OUT / "README.md").write_text(HEADER + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
