"""The training photos: pictures that PyPI packages (scikit-image, scikit-learn) install with
themselves, so that training needs no network and no data set of ours. The zoo trains on them and
``precision="int8"`` calibrates on them; they live in the core so that the runtime never imports the
zoo. (Set5 and other benchmark sets are for evaluation only.)"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import SDKError


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        # stereo_motorcycle returns (left, right, disparity): the right view is nearly the same
        # picture, so only the left one is used.
        return image[0] if isinstance(image, tuple) else image

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


TRAINING_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "stereo_motorcycle": _skimage("stereo_motorcycle"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}


def load_training_photos() -> dict[str, np.ndarray]:
    """Name -> HxWx3 uint8 RGB, always in the same order."""
    photos = {}
    for name, load in TRAINING_PHOTOS.items():
        try:
            image = np.ascontiguousarray(load(), dtype=np.uint8)
        except ImportError as exc:
            raise SDKError(f"training photo {name!r} needs {exc.name}: pip install scikit-image scikit-learn") from exc
        if image.ndim != 3 or image.shape[2] != 3:
            raise SDKError(f"training photo {name!r} is not RGB (shape {image.shape})")
        photos[name] = image
    return photos
