"""Pictures and animations with imageio: PNG, GIF and MP4 (imageio-ffmpeg)."""
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


def write_mp4(path, frames, fps=25):
    """Frames (T, H, W, 3) as an H.264 MP4 (imageio-ffmpeg); odd sizes are padded by one
    edge pixel, as yuv420p needs even ones. Returns the path."""
    import imageio.v2 as iio2
    a = _frames(frames)
    if a.ndim != 4 or a.shape[-1] != 3 or len(a) == 0:
        raise ValueError(f"frames must have shape (T, H, W, 3) with T > 0, got {a.shape}")
    a = np.pad(a, ((0, 0), (0, a.shape[1] % 2), (0, a.shape[2] % 2), (0, 0)), mode="edge")
    iio2.mimwrite(_dir(path), list(a), format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                  pixelformat="yuv420p")
    return path
