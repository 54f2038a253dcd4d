"""The synthetic shape-vs-texture benchmark: a seeded generator that writes real on-disk formats.

Each class is one shape (the object's silhouette) and one texture with its own colour pair
(the object's fill). An image's fill is its class's own texture with probability
`texture_match`, otherwise the texture of a uniformly chosen other class, so texture alone
predicts the class only about `texture_match` of the time while shape always does. A thin
dark contour keeps the silhouette visible whatever the fill, so that shape is learnable from
a few hundred images (without it, and with smaller objects, timm's test_resnet stayed at the
texture level, 0.80 val top-1). Objects sit on a low-contrast noisy background with small
distractors (line segments, elongated blobs, texture patches) drawn before the object, so
they never cover it and are never part of its mask.

Layout under `root` (see `generate`): ImageFolder-style train/ and val/ splits, a VOC-style
copy of val with exact object masks, XML boxes and 255 void bands, cue-conflict images
(shape of one class, texture of another) with exact masks, `labels.csv` with every image's
shape, texture and box, and `MANIFEST.json`, written last, which marks a complete set.

Every image draws from its own `numpy.random.Generator` seeded by (seed, split, class,
index), so the output is bit-for-bit identical for the same arguments.
"""

from __future__ import annotations

import csv
import io as stdio
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .. import artifacts as io
from . import voc
from .geometry import output_size, resize_labels, resize_rgb
from .images import DataError, boxes_from_mask, check_same_size, read_mask, read_rgb, safe_join
from .samples import Sample

log = logging.getLogger(__name__)

VERSION = "1"
MIN_CLASSES = 2
MIN_SIZE, MAX_SIZE = 32, 224
OBJECT_FRACTION = (0.4, 0.65)  # object diameter as a fraction of the image side
MAX_ROTATION_DEG = 20.0  # small enough that no two class shapes become alike
OUTLINE = (25, 25, 25)  # a thin dark contour: the silhouette stays visible whatever the fill
VOID = 255  # VOC's boundary / "don't care" label

# --- shapes: indicator functions on canonical coordinates inside the unit disk -----------


def _polygon(vertices: list[tuple[float, float]]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Even-odd point-in-polygon test, vectorised over the query points."""
    vx = np.array([v[0] for v in vertices])
    vy = np.array([v[1] for v in vertices])

    def inside(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        result = np.zeros(x.shape, dtype=bool)
        for i in range(len(vx)):
            x0, y0, x1, y1 = vx[i - 1], vy[i - 1], vx[i], vy[i]
            if y0 == y1:
                continue
            crosses = (y0 > y) != (y1 > y)
            x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
            result ^= crosses & (x < x_at)
        return result

    return inside


def _regular(n: int, radius: float, start_deg: float = 90.0) -> list[tuple[float, float]]:
    angles = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    return [(radius * math.cos(a), radius * math.sin(a)) for a in angles]


def _star_vertices(points: int, outer: float, inner: float) -> list[tuple[float, float]]:
    verts = []
    for i in range(2 * points):
        r = outer if i % 2 == 0 else inner
        a = math.radians(90.0 + 180.0 * i / points)
        verts.append((r * math.cos(a), r * math.sin(a)))
    return verts


def _heart_vertices(n: int = 48) -> list[tuple[float, float]]:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = 13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t)
    x, y = x - (x.max() + x.min()) / 2, y - (y.max() + y.min()) / 2
    scale = 0.95 / np.sqrt(x**2 + y**2).max()
    return list(zip((x * scale).tolist(), (y * scale).tolist()))


_triangle = _polygon(_regular(3, 0.98))
_star = _polygon(_star_vertices(5, 0.98, 0.42))
_heart = _polygon(_heart_vertices())
_arrow = _polygon([(-0.95, -0.22), (0.1, -0.22), (0.1, -0.68), (0.95, 0.0), (0.1, 0.68), (0.1, 0.22), (-0.95, 0.22)])

SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": lambda x, y: x**2 + y**2 <= 0.95**2,
    "square": lambda x, y: np.maximum(np.abs(x), np.abs(y)) <= 0.68,
    "triangle": _triangle,
    "cross": lambda x, y: ((np.abs(x) <= 0.27) & (np.abs(y) <= 0.95)) | ((np.abs(y) <= 0.27) & (np.abs(x) <= 0.95)),
    "star": _star,
    "ring": lambda x, y: (x**2 + y**2 <= 0.95**2) & (x**2 + y**2 >= 0.55**2),
    "crescent": lambda x, y: (x**2 + y**2 <= 0.95**2) & ((x - 0.45) ** 2 + y**2 > 0.75**2),
    "arrow": _arrow,
    "heart": _heart,
    "tee": lambda x, y: ((np.abs(x) <= 0.7) & (y >= 0.3) & (y <= 0.7)) | ((np.abs(x) <= 0.22) & (y >= -0.95) & (y < 0.3)),
}

# --- textures: binary patterns in image pixel coordinates, one colour pair each ----------


def _stripes(coord: np.ndarray, period: float) -> np.ndarray:
    return np.floor(coord / (period / 2.0)).astype(np.int64) % 2 == 0


TEXTURES: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "hstripes": lambda u, v, p: _stripes(v, p),
    "vstripes": lambda u, v, p: _stripes(u, p),
    "diagonal": lambda u, v, p: _stripes((u + v) / math.sqrt(2.0), p),
    "checker": lambda u, v, p: (_stripes(u, p) ^ _stripes(v, p)),
    "dots": lambda u, v, p: ((u % p) - p / 2) ** 2 + ((v % p) - p / 2) ** 2 <= (0.3 * p) ** 2,
    "grid": lambda u, v, p: ((u % p) < p / 3.5) | ((v % p) < p / 3.5),
    "waves": lambda u, v, p: _stripes(v + 0.3 * p * np.sin(2 * np.pi * u / (1.5 * p)), p),
    "concentric": lambda u, v, p: _stripes(np.sqrt(u**2 + v**2), p),
    "antidiagonal": lambda u, v, p: _stripes((u - v) / math.sqrt(2.0), p),
    "zigzag": lambda u, v, p: _stripes(u + np.abs((v % p) - p / 2), p),
}

# Class k pairs SHAPES[k] with TEXTURES[k] and COLOURS[k]; distinct, saturated pairs that stand
# out from the grey background.
COLOURS: list[tuple[tuple[int, int, int], tuple[int, int, int]]] = [
    ((220, 30, 30), (250, 220, 40)),
    ((20, 60, 200), (235, 235, 235)),
    ((20, 150, 40), (15, 15, 15)),
    ((210, 40, 200), (40, 220, 230)),
    ((250, 130, 10), (20, 20, 90)),
    ((120, 40, 170), (170, 240, 50)),
    ((110, 60, 20), (250, 170, 200)),
    ((0, 128, 128), (255, 250, 200)),
    ((240, 240, 60), (60, 20, 20)),
    ((30, 30, 30), (120, 200, 255)),
]
MAX_CLASSES = min(len(SHAPES), len(TEXTURES), len(COLOURS))
SPLITS = {"train": 0, "val": 1, "cue-conflict": 2}


def class_names(n_classes: int) -> list[str]:
    """The class names (= shape names) of an n-class benchmark, in label order."""
    _check_range("n_classes", n_classes, MIN_CLASSES, MAX_CLASSES)
    return list(SHAPES)[:n_classes]


def _check_range(name: str, value: int | float, low: int | float, high: int | float) -> None:
    if not low <= value <= high:
        raise ValueError(f"synthetic.{name}={value!r} is outside the supported range [{low}, {high}]")


# --- drawing -------------------------------------------------------------------------------


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-contrast grey: smooth blotches plus fine pixel noise."""
    base = rng.uniform(95.0, 165.0) + rng.uniform(-8.0, 8.0, size=3)
    coarse = rng.normal(0.0, 9.0, size=(size // 8 + 2, size // 8 + 2)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BILINEAR))
    fine = rng.normal(0.0, 4.0, size=(size, size, 3))
    return np.clip(base + smooth[..., None] + fine, 0, 255)


def _texture_fill(rng: np.random.Generator, texture: int, height: int, width: int, size: int) -> np.ndarray:
    """(height, width, 3) float image of texture class `texture` with a random phase."""
    period = max(4.0, size / 8.0) * rng.uniform(0.9, 1.1)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    u += rng.uniform(0.0, 4.0 * period) - width / 2.0
    v += rng.uniform(0.0, 4.0 * period) - height / 2.0
    pattern = TEXTURES[list(TEXTURES)[texture]](u, v, period)
    dark, light = (np.array(c, dtype=np.float64) for c in COLOURS[texture])
    return np.where(pattern[..., None], light, dark)


def _draw_clutter(rng: np.random.Generator, canvas: np.ndarray, clutter: int, n_classes: int) -> np.ndarray:
    """Distractors that are no class shape: thin segments, elongated blobs, oblong texture patches."""
    size = canvas.shape[0]
    for _ in range(clutter):
        kind = rng.integers(3)
        if kind == 2:
            w, h = rng.uniform(0.08, 0.18, size=2) * size
            if max(w, h) < 1.5 * min(w, h):  # oblong, never a small square
                w, h = (1.6 * max(w, h), min(w, h)) if rng.random() < 0.5 else (min(w, h), 1.6 * max(w, h))
            w, h = max(2, int(w)), max(2, int(h))
            x0, y0 = rng.integers(0, size - w + 1), rng.integers(0, size - h + 1)
            patch = _texture_fill(rng, int(rng.integers(n_classes)), h, w, size)
            canvas[y0 : y0 + h, x0 : x0 + w] = 0.5 * canvas[y0 : y0 + h, x0 : x0 + w] + 0.5 * patch
            continue
        image = Image.fromarray(canvas.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        colour = tuple(int(c) for c in rng.integers(40, 216, size=3))
        cx, cy = rng.uniform(0, size, size=2)
        angle = rng.uniform(0, np.pi)
        if kind == 0:
            half = rng.uniform(0.08, 0.18) * size
            dx, dy = half * math.cos(angle), half * math.sin(angle)
            draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=colour, width=int(rng.integers(1, 3)))
        else:
            a = rng.uniform(0.05, 0.09) * size
            b = a / rng.uniform(1.8, 2.6)  # elongated: never a small circle
            pts = [(cx + a * math.cos(t) * math.cos(angle) - b * math.sin(t) * math.sin(angle),
                    cy + a * math.cos(t) * math.sin(angle) + b * math.sin(t) * math.cos(angle))
                   for t in np.linspace(0, 2 * np.pi, 24, endpoint=False)]
            draw.polygon(pts, fill=colour)
        canvas = np.asarray(image, dtype=np.float64).copy()
    return canvas


def _object_mask(rng: np.random.Generator, shape: int, size: int) -> np.ndarray:
    """Exact bool mask of one randomly placed, scaled and rotated class shape, fully inside.

    A pixel belongs to the object when at least half of its 4x4 (2x2 above 96 px) sub-samples
    fall inside the shape, which rasterises every shape symmetrically at any size.
    """
    radius = rng.uniform(*OBJECT_FRACTION) * size / 2.0
    cx, cy = rng.uniform(radius, size - radius, size=2)
    theta = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    x0, x1 = max(0, int(cx - radius) - 1), min(size, int(cx + radius) + 2)
    y0, y1 = max(0, int(cy - radius) - 1), min(size, int(cy + radius) + 2)
    ss = 4 if size <= 96 else 2
    offsets = (np.arange(ss) + 0.5) / ss
    xs = (np.arange(x0, x1)[:, None] + offsets[None, :]).ravel()
    ys = (np.arange(y0, y1)[:, None] + offsets[None, :]).ravel()
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    dx, dy = (gx - cx) / radius, (cy - gy) / radius  # canonical frame: y up, unit radius
    cos, sin = math.cos(theta), math.sin(theta)
    inside = SHAPES[list(SHAPES)[shape]](cos * dx + sin * dy, -sin * dx + cos * dy)
    coverage = inside.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3))
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = coverage >= 0.5
    return mask


def render(rng: np.random.Generator, shape: int, texture: int, size: int, clutter: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One image: (uint8 RGB (size, size, 3), its exact bool object mask)."""
    canvas = _draw_clutter(rng, _background(rng, size), clutter, n_classes)
    mask = _object_mask(rng, shape, size)
    fill = _texture_fill(rng, texture, size, size, size)
    canvas[mask] = fill[mask]
    width = max(1, round(size / 64))
    contour = mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3), dtype=bool), iterations=width)
    canvas[contour] = OUTLINE
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mask


# --- writing -------------------------------------------------------------------------------


def _png_bytes(array: np.ndarray, mode: str, palette: list[int] | None = None) -> bytes:
    image = Image.fromarray(array, mode="L" if mode == "P" else mode)
    if mode == "P":
        image = image.convert("P")
        image.putpalette(palette)
    buffer = stdio.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _voc_label_image(mask: np.ndarray, value: int) -> np.ndarray:
    """0 background, `value` on the object, 255 on the 1-pixel band just outside its edge.

    VOC's void band straddles the edge; ours lies outside it so that the object pixels a
    loader reads back are exactly the drawn object.
    """
    band = ndimage.binary_dilation(mask, structure=np.ones((3, 3), dtype=bool)) & ~mask
    label = np.zeros(mask.shape, dtype=np.uint8)
    label[mask] = value
    label[band] = VOID
    return label


def _voc_xml(image_id: str, size: int, name: str, box: np.ndarray) -> bytes:
    """VOC annotation; bndbox is 1-based and inclusive, so exclusive x1 stays x1."""
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "folder").text = "synthetic"
    ElementTree.SubElement(root, "filename").text = f"{image_id}.png"
    size_el = ElementTree.SubElement(root, "size")
    for key, value in (("width", size), ("height", size), ("depth", 3)):
        ElementTree.SubElement(size_el, key).text = str(value)
    ElementTree.SubElement(root, "segmented").text = "1"
    obj = ElementTree.SubElement(root, "object")
    for key, value in (("name", name), ("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0")):
        ElementTree.SubElement(obj, key).text = value
    bndbox = ElementTree.SubElement(obj, "bndbox")
    x0, y0, x1, y1 = (int(v) for v in box)
    for key, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
        ElementTree.SubElement(bndbox, key).text = str(value)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8") + b"\n"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def generate(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    image_size: int = 48,
    n_classes: int = 8,
    train_per_class: int = 120,
    val_per_class: int = 30,
    cue_conflict_per_class: int = 12,
    texture_match: float = 0.8,
    clutter: int = 5,
) -> dict:
    """Write the benchmark under `root` and return its manifest.

    Everything is built in a temporary sibling folder and moved into `root` at the end;
    MANIFEST.json is written last (atomically), so a killed run never leaves one.
    """
    args = dict(seed=seed, image_size=image_size, n_classes=n_classes, train_per_class=train_per_class,
                val_per_class=val_per_class, cue_conflict_per_class=cue_conflict_per_class,
                texture_match=texture_match, clutter=clutter)
    names = class_names(n_classes)
    _check_range("image_size", image_size, MIN_SIZE, MAX_SIZE)
    _check_range("texture_match", texture_match, 0.0, 1.0)
    _check_range("clutter", clutter, 0, 100)
    for key in ("train_per_class", "val_per_class", "cue_conflict_per_class"):
        _check_range(key, args[key], 0 if key == "cue_conflict_per_class" else 1, 9999)

    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    (root / "MANIFEST.json").unlink(missing_ok=True)  # stale marker must not survive a rewrite
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        rows, matched = _write_all(staging, names, args)
        for entry in sorted(staging.iterdir()):
            target = root / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            root.mkdir(exist_ok=True)
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    counts = {split: sum(1 for r in rows if r["split"] == split) for split in SPLITS}
    manifest = {
        "version": VERSION,
        "generator": __name__,
        "arguments": args,
        "classes": names,
        "counts": counts,
        "texture_match_realised": {split: matched[split] / counts[split] for split in ("train", "val") if counts[split]},
    }
    io.write_json(root / "MANIFEST.json", manifest)
    log.info("synthetic benchmark written to %s: %s", root, counts)
    return manifest


def _write_all(out: Path, names: list[str], args: dict) -> tuple[list[dict], dict[str, int]]:
    n, size = len(names), args["image_size"]
    textures = list(TEXTURES)[:n]
    palette = voc.palette()
    rows: list[dict] = []
    matched = {"train": 0, "val": 0}
    voc_ids: list[str] = []
    plan = [("train", args["train_per_class"]), ("val", args["val_per_class"]), ("cue-conflict", args["cue_conflict_per_class"])]
    for split, per_class in plan:
        for label, name in enumerate(names):
            others = [k for k in range(n) if k != label]
            start = int(np.random.default_rng([args["seed"], SPLITS[split], label]).integers(n - 1))
            for index in range(per_class):
                rng = np.random.default_rng([args["seed"], SPLITS[split], label, index])
                if split == "cue-conflict":
                    # cycle through the other classes' textures, so conflicts are balanced
                    texture = others[(start + index) % (n - 1)]
                elif rng.random() < args["texture_match"]:
                    texture = label
                else:
                    texture = others[int(rng.integers(n - 1))]
                image, mask = render(rng, label, texture, size, args["clutter"], n)
                box = boxes_from_mask(mask)[0]
                png = _png_bytes(image, "RGB")
                if split == "cue-conflict":
                    item = f"cue-conflict/{name}/{name}-{names[texture]}_{index:04d}.png"
                    _write(out / item, png)
                    _write(out / "cue-conflict-masks" / name / Path(item).name, _png_bytes(mask.astype(np.uint8) * 255, "L"))
                else:
                    matched[split] += texture == label
                    image_id = f"{name}_{index:04d}"
                    item = f"{split}/{name}/{image_id}.png"
                    _write(out / item, png)
                    if split == "val":
                        voc_ids.append(image_id)
                        voc_dir = out / "voc"
                        _write(voc_dir / "JPEGImages" / f"{image_id}.png", png)
                        _write(voc_dir / "SegmentationObject" / f"{image_id}.png", _png_bytes(_voc_label_image(mask, 1), "P", palette))
                        _write(voc_dir / "SegmentationClass" / f"{image_id}.png", _png_bytes(_voc_label_image(mask, label + 1), "P", palette))
                        _write(voc_dir / "Annotations" / f"{image_id}.xml", _voc_xml(image_id, size, name, box))
                rows.append(dict(split=split, item=item, label=label, shape=name, texture=textures[texture],
                                 texture_label=texture, x0=int(box[0]), y0=int(box[1]), x1=int(box[2]), y1=int(box[3])))
    listing = "".join(f"{i}\n" for i in voc_ids).encode()
    _write(out / "voc" / "ImageSets" / "Segmentation" / "val.txt", listing)
    _write(out / "voc" / "ImageSets" / "Main" / "val.txt", listing)
    classes = {"classes": names, "shapes": names, "textures": textures}
    _write(out / "classes.json", (json.dumps(classes, indent=2) + "\n").encode())
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows, matched


# --- reading back what only this benchmark has ---------------------------------------------


def load_classes(root: str | os.PathLike) -> list[str]:
    """Class names in label order from <root>/classes.json."""
    path = Path(root) / "classes.json"
    try:
        names = json.loads(path.read_text())["classes"]
    except FileNotFoundError:
        raise DataError(f"{path}: not found; generate the synthetic benchmark first (the data rule)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a synthetic classes file ({err}); regenerate the benchmark") from None
    return list(names)


def load_cue_conflict(root: str | os.PathLike, size: int | None, classes: list[str] | None = None,
                      *, max_side: int | None = None) -> list[Sample]:
    """Cue-conflict images with shape label, texture label, exact mask and box, at size x size or
    at their own size (size=None, longer side capped at max_side), see geometry.output_size.

    item is the path relative to root, e.g. "cue-conflict/circle/circle-square_0003.png".
    """
    root = Path(root)
    names = load_classes(root)
    if classes is not None and list(classes) != names:
        raise DataError(f"{root / 'classes.json'}: classes {names} differ from the model's {list(classes)}")
    folder = root / "cue-conflict"
    if not folder.is_dir():
        raise DataError(f"{folder}: cue-conflict folder not found; regenerate the synthetic benchmark")
    unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in names)
    if unknown:
        raise DataError(f"{folder}: folders {unknown} are not classes of {root / 'classes.json'}")
    samples = []
    for shape_dir in (folder / name for name in names):  # label order
        for path in sorted(shape_dir.glob("*.png")):
            shape, _, rest = path.stem.partition("-")
            texture = rest.rsplit("_", 1)[0]
            if shape != shape_dir.name or shape not in names or texture not in names:
                raise DataError(f"{path}: expected <shape>-<texture>_<nnnn>.png with both classes of {names}")
            item = f"cue-conflict/{shape}/{path.name}"
            image = read_rgb(path)
            mask_path = safe_join(root / "cue-conflict-masks", f"{shape}/{path.name}")
            mask = read_mask(mask_path) > 127
            check_same_size(mask, mask_path, image, path)
            out = output_size(image.shape[1], image.shape[0], size, max_side)
            mask = resize_labels(mask, *out)
            samples.append(Sample(item=item, image=resize_rgb(image, *out), label=names.index(shape), mask=mask,
                                  boxes=boxes_from_mask(mask), texture_label=names.index(texture)))
    if not samples:
        raise DataError(f"{folder}: no cue-conflict images")
    return samples
