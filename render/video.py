"""Write frames and pictures with imageio."""
import os

import imageio.v3 as iio
import numpy as np


def write_gif(path, frames, fps=25):
    """Save uint8 frames (T, H, W, 3) as a looping GIF; returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    iio.imwrite(path, np.asarray(frames, dtype=np.uint8), duration=1000 / fps, loop=0)
    return path
