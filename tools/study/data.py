"""The study's data: a seeded synthetic detection set and the RPN's anchors.

Images are ``IMAGE_SIZE`` px squares with shapes of ``NUM_CLASSES`` kinds; the RPN sees
them through stride ``STRIDE`` with ``ANCHOR_SIZES`` x ``ANCHOR_RATIOS`` anchors per cell.
"""
import numpy as np
import mxnet as mx

IMAGE_SIZE = 128
STRIDE = 8
ANCHOR_SIZES = (16, 23, 32, 45, 64)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
NUM_CLASSES = 3  # rectangle, ellipse, triangle
MAX_SEED = 2 ** 32 - 2  # numpy takes seeds below 2**32, and the validation set uses seed + 1


def _shape_mask(kind, x1, y1, x2, y2, yy, xx):
    """Boolean (H, W) mask of a rectangle (0), ellipse (1) or triangle (2) in the box."""
    inside = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
    if kind == 0:
        return inside
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    if kind == 1:
        return ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1
    # Apex at the top centre, base along the bottom edge.
    half_width = rx * (yy + 0.5 - y1) / (y2 - y1)
    return inside & (np.abs(xx + 0.5 - cx) <= half_width)


def _draw_image(rng, size):
    """One (size, size, 3) uint8 image and its (M, 6) label [x1, y1, x2, y2, class, hard]."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-0.4, 0.4, (2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    img = img + rng.normal(0, 12, (size, size, 3))
    boxes = []
    count = rng.randint(1, 4) + rng.randint(0, 3)
    for _ in range(count):
        tiny = rng.uniform() < 0.15
        faint = not tiny and rng.uniform() < 0.2
        side = rng.uniform(4, 9) if tiny else rng.uniform(14, 56)
        w = side * rng.uniform(0.7, 1.4)
        h = side * rng.uniform(0.7, 1.4)
        x1, y1 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        x2, y2 = x1 + w, y1 + h
        kind = rng.randint(NUM_CLASSES)
        mask = _shape_mask(kind, x1, y1, x2, y2, yy, xx)
        if not mask.any():
            continue
        under = img[mask].mean(axis=0)
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - under).max() < 80:  # make normal shapes stand out
            colour = np.where(under > 127, under - 110, under + 110)
        alpha = rng.uniform(0.08, 0.18) if faint else 1.0
        img[mask] = (1 - alpha) * img[mask] + alpha * colour
        boxes.append([x1, y1, x2, y2, kind, float(tiny or faint)])
    label = np.array(boxes, dtype=np.float32).reshape(-1, 6)
    return np.clip(img, 0, 255).astype(np.uint8), label


def make_dataset(num_images, seed, size=IMAGE_SIZE):
    """``num_images`` synthetic (image, label) pairs, the same for the same ``seed``.

    image: (size, size, 3) uint8; label: (M, 6) float32 rows
    [x1, y1, x2, y2, class, hard], M >= 0. Tiny shapes (a side of 4-9 px,
    each side then stretched by 0.7-1.4, so 2.8-12.6 px) and shapes drawn at
    8-18 % opacity are flagged hard (about a third of the objects).
    """
    rng = np.random.RandomState(seed)
    return [_draw_image(rng, size) for _ in range(num_images)]


def make_anchors(size=IMAGE_SIZE, stride=STRIDE, sizes=ANCHOR_SIZES, ratios=ANCHOR_RATIOS):
    """(H * W * A, 4) corner anchors, ordered (row, column, anchor) like the RPN output."""
    shapes = []
    for s in sizes:
        for r in ratios:  # r = height / width, area s * s
            w = s / np.sqrt(r)
            shapes.append((w, w * r))
    shapes = np.array(shapes)
    cells = size // stride
    centre = (np.arange(cells) + 0.5) * stride
    cy, cx = np.meshgrid(centre, centre, indexing='ij')
    c = np.stack([cx, cy], axis=-1)[:, :, None, :]  # (H, W, 1, 2)
    half = shapes[None, None] / 2                   # (1, 1, A, 2)
    return np.concatenate([c - half, c + half], axis=-1).reshape(-1, 4).astype(np.float32)


def _inside(anchors, size=IMAGE_SIZE):
    """(N,) bool: anchors inside the image, the only ones either target rule trains."""
    return ((anchors[:, :2] >= 0) & (anchors[:, 2:] < size)).all(axis=1)


def _to_tensor(images):
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in about [-1, 1]."""
    return mx.nd.array(np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
