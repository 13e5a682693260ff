"""render/io.py: images and animations read back as written (MP4 within its lossy codec)."""
import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import pytest

from diffsuite.render.io import write_gif, write_mp4, write_png


def _frames(T=6, H=33, W=48):
    """Smooth moving gradients: what a codec keeps well, and each frame differs."""
    y, x = np.mgrid[0:H, 0:W] / max(H, W)
    return np.stack([np.stack([x + 0.1 * t, y, 0.5 * (x + y)], -1) % 1.0 for t in range(T)])


def test_png_and_gif_read_back_exactly(tmp_path):
    f = _frames()
    u8 = (np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8)
    assert (iio.imread(write_png(tmp_path / "a" / "one.png", f[0])) == u8[0]).all()  # floats in [0, 1]
    assert (iio.imread(write_png(tmp_path / "u8.png", u8[1])) == u8[1]).all()
    gif = iio.imread(write_gif(tmp_path / "anim.gif", u8, fps=10), index=None)
    assert gif.shape[:3] == u8.shape[:3]
    assert np.abs(gif[..., :3].astype(int) - u8).mean() < 8  # GIF quantizes to 256 colours


def test_mp4_reads_back_close_with_its_frame_count_and_rate(tmp_path):
    f = _frames(T=8, H=33, W=47)  # odd sizes: padded to even
    path = write_mp4(tmp_path / "clip.mp4", f, fps=12)
    reader = iio2.get_reader(path, format="FFMPEG")
    assert abs(reader.get_meta_data()["fps"] - 12) < 1e-6
    back = np.stack([frame for frame in reader.iter_data()])
    reader.close()
    assert back.shape == (8, 34, 48, 3)
    err = np.abs(back[:, :33, :47].astype(float) / 255 - f).mean()
    assert err < 0.03, err
    with pytest.raises(ValueError, match="frames"):
        write_mp4(tmp_path / "bad.mp4", f[0])
