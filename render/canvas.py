"""A plain 2D drawing of point masses and springs (side view), as an RGB array."""
import numpy as np


def _disk(img, cx, cy, r, color):
    h, w, _ = img.shape
    y0, y1, x0, x1 = max(cy - r, 0), min(cy + r + 1, h), max(cx - r, 0), min(cx + r + 1, w)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    img[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = color


def _ground(img, ground, view):
    """Ground below y = ground, with a mark every 10 cm (longer every 50 cm) that shows motion."""
    h, w, _ = img.shape
    left, bottom, width = view
    scale = w / width
    gy = max(int(round(h - 1 - (ground - bottom) * scale)), 0)
    img[gy:] = (200, 190, 170)
    for tick in np.arange(np.ceil(left * 10) / 10, left + width, 0.1):
        px = int(round((tick - left) * scale))
        img[gy:gy + (12 if round(tick * 10) % 5 == 0 else 6), max(px - 1, 0):px + 1] = (90, 80, 60)


def draw_mass_spring(x, springs, actuation=None, ground=0.1, view=(0.0, 0.0, 1.0), size=(256, 384)):
    """x: (N, 2 or 3) positions, drawn in the x-y plane. view = (left, bottom, width) in metres.

    Springs are grey when passive and red/blue when an actuation value (per spring, in
    [-1, 1]) contracts/extends them. Returns uint8 (H, W, 3).
    """
    h, w = size
    left, bottom, width = view
    scale = w / width
    img = np.full((h, w, 3), 245, dtype=np.uint8)
    to_px = lambda p: (int(round((p[0] - left) * scale)), int(round(h - 1 - (p[1] - bottom) * scale)))
    _ground(img, ground, view)
    for s, (a, b) in enumerate(springs):
        c = 0.0 if actuation is None else float(np.clip(actuation[s], -1, 1))
        color = (int(120 + 120 * max(c, 0)), 120, int(120 + 120 * max(-c, 0)))
        pa, pb = np.array(to_px(x[a])), np.array(to_px(x[b]))
        for t in np.linspace(0, 1, int(np.abs(pb - pa).max()) + 2):
            _disk(img, *np.round(pa + t * (pb - pa)).astype(int), 1, color)
    for p in x:
        _disk(img, *to_px(p), 3, (30, 30, 30))
    return img


def draw_particles(x, colors, ground=0.0, view=(0.0, 0.0, 1.0), size=(256, 384), radius=2):
    """x: (P, 2 or 3) positions drawn in the x-y plane, colors: (P, 3) uint8. Returns uint8 (H, W, 3)."""
    h, w = size
    left, bottom, width = view
    scale = w / width
    img = np.full((h, w, 3), 245, dtype=np.uint8)
    _ground(img, ground, view)
    px = np.round((x[:, 0] - left) * scale).astype(int)
    py = np.round(h - 1 - (x[:, 1] - bottom) * scale).astype(int)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius:
                X, Y = px + dx, py + dy
                ok = (X >= 0) & (X < w) & (Y >= 0) & (Y < h)
                img[Y[ok], X[ok]] = colors[ok]
    return img
