"""Images as they come: transparency, animation frames, aspect ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from polymodal.config import ImageSpec
from polymodal.processors.image import ImageProcessor


def processor(**options: object) -> ImageProcessor:
    return ImageProcessor(ImageSpec(type="image", size=8, **options), "photo")  # type: ignore[arg-type]


def test_transparent_pixels_take_the_background(tmp_path: Path) -> None:
    img = Image.new("RGBA", (8, 8), (10, 200, 30, 0))  # fully transparent, a colour underneath
    img.putpixel((0, 0), (0, 0, 255, 255))
    img.save(tmp_path / "a.png")
    raw = processor(background=[255, 0, 255]).decode_raw("a.png", tmp_path)
    assert tuple(raw[4, 4]) == (255, 0, 255)
    assert tuple(raw[0, 0]) == (0, 0, 255)


def test_transparent_palette_gif_is_composited(tmp_path: Path) -> None:
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 0, 123, 45, 67] + [0] * 762)
    img.save(tmp_path / "t.gif", transparency=1)
    raw = processor().decode_raw("t.gif", tmp_path)
    assert tuple(raw[3, 3]) == (255, 255, 255)


def test_animated_frame_choice(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    first = processor().decode_raw("anim.gif", tmp_path)
    middle = processor(frame="middle").decode_raw("anim.gif", tmp_path)
    last = processor(frame=9).decode_raw("anim.gif", tmp_path)
    assert first[0, 0].argmax() == 0 and middle[0, 0].argmax() == 1 and last[0, 0].argmax() == 2


def test_pad_keeps_the_aspect_ratio_and_crop_the_centre() -> None:
    wide = np.zeros((4, 16, 3), dtype=np.uint8)
    wide[:, 6:10] = 200  # a centred block
    padded = processor(resize="pad").features(wide)["pixels"]  # (3, 8, 8)
    assert padded.shape == (3, 8, 8)
    assert (padded[:, 0] == 255).all() and (padded[:, -1] == 255).all()  # bands of background above and below
    cropped = processor(resize="crop").features(wide)["pixels"]
    assert cropped.shape == (3, 8, 8) and cropped[:, :, 3:5].min() == 200
