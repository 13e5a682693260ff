"""Pictures and animations with imageio: PNG and GIF."""
import os

import imageio.v3 as iio
import numpy as np


def _frames(images):
    a = np.asarray(images)
    if a.dtype != np.uint8:  # floats in [0, 1]
        a = (np.clip(a, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return a


def _dir(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def write_png(path, image):
    """One image (H, W, 3): uint8, or floats in [0, 1]. Returns the path."""
    iio.imwrite(_dir(path), _frames(image))
    return path


def write_gif(path, frames, fps=25):
    """Frames (T, H, W, 3) as a looping GIF; returns the path."""
    iio.imwrite(_dir(path), _frames(frames), duration=1000 / fps, loop=0)
    return path
