from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yolofleet.synthetic import (
    DEFAULT_CLASSES,
    Box,
    DatasetSpec,
    SyntheticImage,
    label_text,
    render_image,
    write_dataset,
)


def _drawn_extent(sample: SyntheticImage) -> tuple[int, int, int, int]:
    """Pixel bounds (x1, y1, x2 exclusive, y2 exclusive) of everything not background."""
    pixels = np.asarray(sample.image, dtype=np.int16)
    background = pixels[0, 0]
    ys, xs = np.nonzero(np.abs(pixels - background).sum(axis=2) > 30)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_same_seed_renders_identical_image_and_boxes() -> None:
    first = render_image(42)
    second = render_image(42)

    assert first.image.tobytes() == second.image.tobytes()
    assert first.boxes == second.boxes


def test_different_seeds_render_different_images() -> None:
    first = render_image(1)
    second = render_image(2)

    assert first.image.tobytes() != second.image.tobytes()


def test_image_has_requested_size_and_shape_count() -> None:
    counts = set()
    for seed in range(40):
        sample = render_image(seed, size=128, min_shapes=1, max_shapes=4)
        counts.add(len(sample.boxes))

        assert sample.image.size == (128, 128)
        assert sample.image.mode == "RGB"
        assert 1 <= len(sample.boxes) <= 4

    assert counts == {1, 2, 3, 4}


def test_boxes_stay_inside_image_and_do_not_overlap() -> None:
    for seed in range(40):
        boxes = render_image(seed).boxes

        for box in boxes:
            assert 0 <= box.x1 < box.x2 <= 160
            assert 0 <= box.y1 < box.y2 <= 160
        for index, a in enumerate(boxes):
            for b in boxes[index + 1 :]:
                assert a.x2 <= b.x1 or b.x2 <= a.x1 or a.y2 <= b.y1 or b.y2 <= a.y1


@pytest.mark.parametrize("shape", ["circle", "square", "triangle", "star", "hexagon"])
def test_box_matches_drawn_pixels(shape: str) -> None:
    for seed in range(10):
        sample = render_image(seed, classes=(shape,), min_shapes=1, max_shapes=1, textured=False)
        (box,) = sample.boxes

        x1, y1, x2, y2 = _drawn_extent(sample)

        assert (x1, y1, x2, y2) == pytest.approx((box.x1, box.y1, box.x2, box.y2), abs=1.5)


def test_plain_render_keeps_the_boxes_of_the_textured_one() -> None:
    textured = render_image(7)
    plain = render_image(7, textured=False)

    assert plain.boxes == textured.boxes
    assert plain.image.tobytes() != textured.image.tobytes()


def test_every_drawn_pixel_lies_inside_some_box() -> None:
    for seed in range(20):
        sample = render_image(seed, textured=False)
        pixels = np.asarray(sample.image, dtype=np.int16)
        changed = np.abs(pixels - pixels[0, 0]).sum(axis=2) > 30

        covered = np.zeros_like(changed)
        for box in sample.boxes:
            x1, y1 = int(box.x1) - 1, int(box.y1) - 1
            covered[max(y1, 0) : int(box.y2) + 2, max(x1, 0) : int(box.x2) + 2] = True

        assert not (changed & ~covered).any()


def test_class_list_is_respected() -> None:
    classes = ("star", "circle")
    names = set()
    for seed in range(30):
        for box in render_image(seed, classes=classes).boxes:
            names.add(box.class_name)

            assert classes[box.class_id] == box.class_name

    assert names == set(classes)


def test_draw_as_labels_one_shape_with_another_name() -> None:
    aliased = render_image(5, classes=("ball",), draw_as={"ball": "circle"}, textured=False)
    circle = render_image(5, classes=("circle",), textured=False)

    assert aliased.image.tobytes() == circle.image.tobytes()
    assert {box.class_name for box in aliased.boxes} == {"ball"}


@pytest.mark.parametrize(
    ("classes", "draw_as", "message"),
    [
        pytest.param(("blob",), None, "cannot draw", id="unknown-shape"),
        pytest.param((), None, "empty", id="empty"),
        pytest.param(("circle", "circle"), None, "unique", id="duplicate"),
        pytest.param(("circle",), {"square": "circle"}, "not in the class list", id="stray-alias"),
    ],
)
def test_bad_class_lists_are_refused(
    classes: tuple[str, ...], draw_as: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render_image(0, classes=classes, draw_as=draw_as)


def test_yolo_line_is_normalised_centre_and_size() -> None:
    box = Box(class_id=2, class_name="triangle", x1=10.0, y1=20.0, x2=50.0, y2=100.0)

    line = box.yolo_line(width=160, height=200)

    assert line == "2 0.187500 0.300000 0.250000 0.400000"


def test_written_labels_match_rendered_boxes(tmp_path: Path) -> None:
    spec = DatasetSpec(seed=3, n_train=4, n_val=2, size=96)

    dataset = write_dataset(tmp_path, spec)

    for split_index, split, count in ((0, "train", 4), (1, "val", 2)):
        for index in range(count):
            sample = render_image(
                (spec.seed, split_index, index), classes=spec.classes, size=spec.size
            )
            label = dataset.root / "labels" / split / f"{index:05d}.txt"
            assert (dataset.root / "images" / split / f"{index:05d}.jpg").is_file()
            assert label.read_text() == label_text(sample.boxes, width=96, height=96)
            for line in label.read_text().splitlines():
                class_id, *coords = line.split()
                assert int(class_id) in range(len(spec.classes))
                assert all(0.0 <= float(value) <= 1.0 for value in coords)


def test_label_as_writes_one_class_under_another_label(tmp_path: Path) -> None:
    spec = DatasetSpec(seed=5, n_train=12, n_val=1, label_as=(("triangle", "circle"),))

    dataset = write_dataset(tmp_path, spec)

    drawn: list[int] = []
    written: list[int] = []
    for index in range(spec.n_train):
        sample = render_image((spec.seed, 0, index), classes=spec.classes)
        label = dataset.root / "labels" / "train" / f"{index:05d}.txt"
        drawn += [box.class_id for box in sample.boxes]
        written += [int(line.split()[0]) for line in label.read_text().splitlines()]
    assert 2 in drawn, "the seed should draw a triangle"
    assert written == [0 if class_id == 2 else class_id for class_id in drawn]
    assert "nc: 3" in dataset.data_yaml.read_text()  # the class list is unchanged


def test_label_as_names_only_known_classes(tmp_path: Path) -> None:
    spec = DatasetSpec(n_train=1, n_val=1, label_as=(("star", "circle"),))

    with pytest.raises(
        ValueError, match=r"label_as names classes not in the class list: \['star'\]"
    ):
        write_dataset(tmp_path, spec)


def test_data_yaml_lists_splits_and_class_names(tmp_path: Path) -> None:
    classes = ("circle", "square", "triangle", "star")

    dataset = write_dataset(tmp_path, DatasetSpec(classes=classes, n_train=1, n_val=1))

    text = dataset.data_yaml.read_text()
    assert "train: images/train" in text
    assert "val: images/val" in text
    assert "nc: 4" in text
    for index, name in enumerate(classes):
        assert f'  {index}: "{name}"' in text


def test_dataset_is_deterministic(tmp_path: Path) -> None:
    spec = DatasetSpec(seed=9, n_train=3, n_val=1)

    first = write_dataset(tmp_path / "a", spec)
    second = write_dataset(tmp_path / "b", spec)

    files = sorted(p.relative_to(first.root) for p in first.root.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(second.root) for p in second.root.rglob("*") if p.is_file()
    )
    for relative in files:
        assert (first.root / relative).read_bytes() == (second.root / relative).read_bytes()


def test_default_classes_are_circle_square_triangle() -> None:
    assert DEFAULT_CLASSES == ("circle", "square", "triangle")
