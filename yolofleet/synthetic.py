"""A seeded generator of coloured-shape images and their YOLO-format detection labels.

Every image comes from a seed alone, so a test can render an image "whose shapes are known" and
compare a model's detections with :attr:`SyntheticImage.boxes`. A class list names what the
labels say; ``draw_as`` can make a class draw another shape (a model trained on swapped labels
gives clearly different answers on the same images), and a data set's ``label_as`` writes one
class's shapes under another class's label (a labelling bug: that class vanishes from a model).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "hexagon")
DEFAULT_CLASSES = ("circle", "square", "triangle")

_SUPERSAMPLE = 2  # draw at 2x and shrink, so edges are antialiased
_MARGIN = 2.0  # pixels kept free at the image border
_MAX_TRIES = 60

Seed = int | Sequence[int]
Point = tuple[float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Box:
    """One drawn shape: its class and its pixel box ``(x1, y1, x2, y2)``."""

    class_id: int
    class_name: str
    x1: float
    y1: float
    x2: float
    y2: float

    def yolo_line(self, *, width: int, height: int) -> str:
        """The YOLO label line: class id, then centre and size normalised to ``[0, 1]``."""
        cx = (self.x1 + self.x2) / 2 / width
        cy = (self.y1 + self.y2) / 2 / height
        w = (self.x2 - self.x1) / width
        h = (self.y2 - self.y1) / height
        return f"{self.class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SyntheticImage:
    """An RGB image and the ground truth of every shape drawn in it."""

    image: Image.Image
    boxes: tuple[Box, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetSpec:
    """Everything that determines a generated data set (same spec, same bytes)."""

    classes: tuple[str, ...] = DEFAULT_CLASSES
    draw_as: tuple[tuple[str, str], ...] = ()
    label_as: tuple[tuple[str, str], ...] = ()
    seed: int = 0
    n_train: int = 200
    n_val: int = 40
    size: int = 160
    min_shapes: int = 1
    max_shapes: int = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Dataset:
    """A data set on disk: ``images/{train,val}``, ``labels/{train,val}`` and ``data.yaml``."""

    root: Path
    data_yaml: Path
    spec: DatasetSpec


def render_image(
    seed: Seed,
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    draw_as: Mapping[str, str] | None = None,
    size: int = 160,
    min_shapes: int = 1,
    max_shapes: int = 4,
    min_extent: float = 0.14,
    textured: bool = True,
) -> SyntheticImage:
    """Render one ``size`` x ``size`` image with 1-4 (by default) shapes on a noisy background.

    A shape spans ``min_extent`` (a fraction of ``size``) up to a limit that shrinks as more
    shapes share the image (0.42 for one, 0.28 for four or more). ``textured=False`` draws the
    same shapes (same boxes) on a flat background without noise.
    """
    shapes = _resolve_shapes(classes, draw_as)
    if not 1 <= min_shapes <= max_shapes:
        raise ValueError(f"need 1 <= min_shapes <= max_shapes, got {min_shapes}..{max_shapes}")
    if not 0 < min_extent <= _largest_extent(max_shapes):
        raise ValueError(f"min_extent must be in (0, {_largest_extent(max_shapes)}]")
    shape_ss, texture_ss = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(shape_ss)
    texture_rng = np.random.default_rng(texture_ss)

    background = _pick_background(rng)
    canvas = _background(texture_rng, background, size=size, textured=textured)
    draw = ImageDraw.Draw(canvas)
    count = int(rng.integers(min_shapes, max_shapes + 1))
    boxes: list[Box] = []
    for _ in range(count):
        class_id = int(rng.integers(len(classes)))
        placed = _place(
            rng, shapes[class_id], size=size, count=count, min_extent=min_extent, taken=boxes
        )
        if placed is None:
            continue
        outline, box = placed
        _draw(draw, outline, box, colour=_pick_colour(rng, background))
        boxes.append(Box(class_id=class_id, class_name=classes[class_id], **box))
    image = canvas.reduce(_SUPERSAMPLE)
    if textured:
        image = _add_noise(texture_rng, image)
    return SyntheticImage(image=image, boxes=tuple(boxes))


def label_text(boxes: Sequence[Box], *, width: int, height: int) -> str:
    """The content of a YOLO ``.txt`` label file for ``boxes``."""
    return "".join(box.yolo_line(width=width, height=height) + "\n" for box in boxes)


def write_dataset(root: Path, spec: DatasetSpec) -> Dataset:
    """Write the train and val splits of ``spec`` under ``root`` plus the ``data.yaml``."""
    draw_as = dict(spec.draw_as)
    relabel = _relabelling(spec.classes, dict(spec.label_as))
    for split_index, (split, count) in enumerate((("train", spec.n_train), ("val", spec.n_val))):
        images = root / "images" / split
        labels = root / "labels" / split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            sample = render_image(
                (spec.seed, split_index, index),
                classes=spec.classes,
                draw_as=draw_as,
                size=spec.size,
                min_shapes=spec.min_shapes,
                max_shapes=spec.max_shapes,
            )
            sample.image.save(images / f"{index:05d}.jpg", quality=95)
            labelled = [relabel.get(box.class_id, box.class_id) for box in sample.boxes]
            boxes = [
                dataclasses.replace(box, class_id=c, class_name=spec.classes[c])
                for box, c in zip(sample.boxes, labelled, strict=True)
            ]
            text = label_text(boxes, width=spec.size, height=spec.size)
            (labels / f"{index:05d}.txt").write_text(text)
    data_yaml = root / "data.yaml"
    data_yaml.write_text(data_yaml_text(spec.classes))
    return Dataset(root=root, data_yaml=data_yaml, spec=spec)


def data_yaml_text(classes: Sequence[str]) -> str:
    """The ``data.yaml`` ultralytics reads (names are JSON-quoted, which YAML accepts).

    It names no ``path``, so ultralytics resolves the splits against the file's own folder and
    the data set can be moved or renamed as a whole.
    """
    lines = [
        "train: images/train",
        "val: images/val",
        f"nc: {len(classes)}",
        "names:",
        *(f"  {index}: {json.dumps(name)}" for index, name in enumerate(classes)),
    ]
    return "\n".join(lines) + "\n"


def _resolve_shapes(classes: Sequence[str], draw_as: Mapping[str, str] | None) -> tuple[str, ...]:
    if not classes:
        raise ValueError("the class list is empty")
    if len(set(classes)) != len(classes):
        raise ValueError(f"class names must be unique, got {list(classes)}")
    aliases = dict(draw_as or {})
    if unknown := set(aliases) - set(classes):
        raise ValueError(f"draw_as names classes not in the class list: {sorted(unknown)}")
    shapes = tuple(aliases.get(name, name) for name in classes)
    if bad := [shape for shape in shapes if shape not in SHAPES]:
        raise ValueError(f"cannot draw {bad}: known shapes are {list(SHAPES)} (use draw_as)")
    return shapes


def _relabelling(classes: Sequence[str], label_as: Mapping[str, str]) -> dict[int, int]:
    if unknown := (set(label_as) | set(label_as.values())) - set(classes):
        raise ValueError(f"label_as names classes not in the class list: {sorted(unknown)}")
    return {classes.index(drawn): classes.index(label) for drawn, label in label_as.items()}


def _pick_background(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(20, 235, size=3)


def _pick_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """A colour that differs clearly from the background colour."""
    colour = rng.uniform(0, 255, size=3)
    for _ in range(_MAX_TRIES):
        if np.abs(colour - background).sum() >= 180:
            break
        colour = rng.uniform(0, 255, size=3)
    r, g, b = (int(c) for c in colour)
    return (r, g, b)


def _background(
    rng: np.random.Generator, colour: np.ndarray, *, size: int, textured: bool
) -> Image.Image:
    """A flat colour, or (textured) smooth blotches plus a few faint lines at the canvas scale."""
    side = size * _SUPERSAMPLE
    if not textured:
        r, g, b = (int(c) for c in colour)
        return Image.new("RGB", (side, side), (r, g, b))
    coarse = colour + rng.normal(0, 28, size=(5, 5, 3))
    small = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8))
    canvas = small.resize((side, side), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 5))):
        x1, y1, x2, y2 = (float(v) for v in rng.uniform(0, side, size=4))
        shade = np.clip(colour + rng.normal(0, 40, size=3), 0, 255)
        r, g, b = (int(c) for c in shade)
        draw.line([(x1, y1), (x2, y2)], fill=(r, g, b), width=int(rng.integers(1, 4)))
    return canvas


def _add_noise(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    sigma = float(rng.uniform(3, 14))
    noisy = pixels + rng.normal(0, sigma, size=pixels.shape)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def _outline(rng: np.random.Generator, shape: str, extent: float) -> list[Point]:
    """Vertices around (0, 0) of a shape about ``extent`` pixels across (empty for a circle)."""
    radius = extent / 2
    match shape:
        case "circle":
            return []
        case "square":
            turn = math.radians(float(rng.uniform(-30, 30)))
            corners = [(math.pi / 4 + k * math.pi / 2) for k in range(4)]
            return _polar([radius] * 4, [c + turn for c in corners])
        case "triangle" | "hexagon":
            sides = 3 if shape == "triangle" else 6
            turn = float(rng.uniform(0, 2 * math.pi))
            return _polar([radius] * sides, [turn + k * 2 * math.pi / sides for k in range(sides)])
        case "star":
            turn = float(rng.uniform(0, 2 * math.pi))
            radii = [radius if k % 2 == 0 else radius * 0.45 for k in range(10)]
            return _polar(radii, [turn + k * math.pi / 5 for k in range(10)])
    raise ValueError(f"unknown shape {shape!r}")


def _polar(radii: Sequence[float], angles: Sequence[float]) -> list[Point]:
    return [(r * math.cos(a), r * math.sin(a)) for r, a in zip(radii, angles, strict=True)]


def _largest_extent(count: int) -> float:
    return (0.42, 0.36, 0.30, 0.28)[min(count, 4) - 1]


def _place(
    rng: np.random.Generator,
    shape: str,
    *,
    size: int,
    count: int,
    min_extent: float,
    taken: Sequence[Box],
) -> tuple[list[Point], dict[str, float]] | None:
    """Pick a size, angle and spot that keeps the shape inside the image and off other boxes."""
    for _ in range(_MAX_TRIES):
        extent = float(rng.uniform(size * min_extent, size * _largest_extent(count)))
        points = _outline(rng, shape, extent)
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            left, right, top, bottom = min(xs), max(xs), min(ys), max(ys)
        else:
            left, right, top, bottom = -extent / 2, extent / 2, -extent / 2, extent / 2
        cx = float(rng.uniform(_MARGIN - left, size - _MARGIN - right))
        cy = float(rng.uniform(_MARGIN - top, size - _MARGIN - bottom))
        box = {"x1": cx + left, "y1": cy + top, "x2": cx + right, "y2": cy + bottom}
        if not any(_overlaps(box, other) for other in taken):
            return [(cx + x, cy + y) for x, y in points], box
    return None


def _overlaps(box: Mapping[str, float], other: Box) -> bool:
    gap = 2.0
    return not (
        box["x2"] + gap <= other.x1
        or other.x2 + gap <= box["x1"]
        or box["y2"] + gap <= other.y1
        or other.y2 + gap <= box["y1"]
    )


def _draw(
    draw: ImageDraw.ImageDraw,
    outline: Sequence[Point],
    box: Mapping[str, float],
    *,
    colour: tuple[int, int, int],
) -> None:
    """Fill a polygon, or the circle inscribed in ``box`` when there is no outline."""
    scale = _SUPERSAMPLE
    if not outline:
        x1, y1, x2, y2 = (box[key] * scale for key in ("x1", "y1", "x2", "y2"))
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=colour)
        return
    # PIL puts pixel i's centre at coordinate i, so continuous coordinates shift by half a pixel.
    draw.polygon([(x * scale - 0.5, y * scale - 0.5) for x, y in outline], fill=colour)
