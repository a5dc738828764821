"""VQA-Shapes: CLEVR-like scenes of coloured shapes with generated questions, rendered at materialize time.

Each scene places 3 to 6 objects (a circle, square or triangle in red, green, blue or yellow, of varying size)
in distinct cells of a 3 x 3 grid on a 64 x 64 canvas. Six question templates ask about colour ("what color is
the circle?"), shape ("what shape is the blue object?"), count ("how many red objects are there?", "how many
squares are there?"), position ("where is the green triangle?": left, middle or right) and existence ("is there
a yellow circle?"). Every scene gets `QUESTIONS_PER_IMAGE` questions with pairwise different answers, chosen
greedily among the questions the scene can answer so that, for every question text, the answers are as close
to uniform as possible: the question alone predicts little beyond its answer type, and the image alone cannot
tell which of its different answers is wanted.

`materialize_vqa_shapes` writes one PNG per scene and `records.csv` with one row per question: `id, image,
question, answer, question_type, image_id, split` (scenes, and so images, are disjoint across splits).
Everything is seeded: the same seed gives the same files.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from polymodal.datasets.staging import dataset_root, materialize

VERSION = 1
SIZE = 64
GRID = 3
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 230), "yellow": (230, 200, 40)}
SHAPES = ("circle", "square", "triangle")
COLUMNS = ("left", "middle", "right")
QUESTIONS_PER_IMAGE = 4
SCENES = (2400, 400, 400)  # train, val, test


@dataclass(frozen=True)
class Thing:
    shape: str
    color: str
    cell: int  # 0..8, row-major in the 3 x 3 grid
    size: float  # radius as a fraction of the cell side


def random_scene(rng: np.random.Generator) -> list[Thing]:
    cells = rng.choice(GRID * GRID, size=int(rng.integers(3, 7)), replace=False)
    return [Thing(SHAPES[rng.integers(len(SHAPES))], list(COLORS)[rng.integers(len(COLORS))], int(c),
                  float(rng.uniform(0.28, 0.42))) for c in cells]


def render(scene: list[Thing], rng: np.random.Generator) -> Image.Image:
    """A 64 x 64 RGB image: grey background with a little noise, each object jittered inside its cell."""
    cell = SIZE / GRID
    shade = int(rng.integers(90, 140))
    image = Image.new("RGB", (SIZE, SIZE), (shade, shade, shade))
    draw = ImageDraw.Draw(image)
    for t in scene:
        r = t.size * cell
        cx = (t.cell % GRID + 0.5) * cell + rng.uniform(-0.1, 0.1) * cell
        cy = (t.cell // GRID + 0.5) * cell + rng.uniform(-0.1, 0.1) * cell
        box = (cx - r, cy - r, cx + r, cy + r)
        if t.shape == "circle":
            draw.ellipse(box, fill=COLORS[t.color])
        elif t.shape == "square":
            draw.rectangle(box, fill=COLORS[t.color])
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLORS[t.color])
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, size=(SIZE, SIZE, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def candidate_questions(scene: list[Thing]) -> list[tuple[str, str, str]]:
    """Every (question type, question, answer) the scene answers without ambiguity."""
    shapes, colors = Counter(t.shape for t in scene), Counter(t.color for t in scene)
    pairs = Counter((t.color, t.shape) for t in scene)
    out: list[tuple[str, str, str]] = []
    for t in scene:
        if shapes[t.shape] == 1:
            out.append(("color", f"what color is the {t.shape}?", t.color))
        if colors[t.color] == 1:
            out.append(("shape", f"what shape is the {t.color} object?", t.shape))
        if pairs[(t.color, t.shape)] == 1:
            out.append(("position", f"where is the {t.color} {t.shape}?", COLUMNS[t.cell % GRID]))
    for c in COLORS:
        if colors[c] <= 3:
            out.append(("count", f"how many {c} objects are there?", str(colors[c])))
        for s in SHAPES:
            out.append(("exist", f"is there a {c} {s}?", "yes" if pairs[(c, s)] else "no"))
    for s in SHAPES:
        if shapes[s] <= 3:
            out.append(("count", f"how many {s}s are there?", str(shapes[s])))
    return out


def pick_questions(candidates: list[tuple[str, str, str]], seen: dict[str, Counter[str]],
                   rng: np.random.Generator, k: int) -> list[tuple[str, str, str]]:
    """Up to k questions with pairwise different answers, each time one whose answer is rarest so far for its
    question text (ties broken at random); `seen` is updated."""
    chosen: list[tuple[str, str, str]] = []
    pool = [candidates[i] for i in rng.permutation(len(candidates))]
    for _ in range(k):
        pool = [c for c in pool if c[2] not in {a for _, _, a in chosen} and c[1] not in {q for _, q, _ in chosen}]
        if not pool:
            break
        best = min(pool, key=lambda c: seen.setdefault(c[1], Counter())[c[2]] - _spread(seen[c[1]]))
        seen[best[1]][best[2]] += 1
        chosen.append(best)
    return chosen


def _spread(counts: Counter[str]) -> float:
    """Prefers question texts whose answers are already spread: a small bonus for the least-used text."""
    return -0.01 * sum(counts.values())


def materialize_vqa_shapes(root: Path | None = None, seed: int = 0,
                           scenes: tuple[int, int, int] = SCENES) -> Path:
    """Write VQA-Shapes (PNG scenes + `records.csv`) under `root`; return the folder. Reuses a complete copy.

    `scenes`: the number of scenes in train, val and test (each gets `QUESTIONS_PER_IMAGE` questions).
    """
    tag = "" if scenes == SCENES else "_" + "-".join(map(str, scenes))
    return materialize(root or dataset_root("vqa_shapes", VERSION, f"s{seed}{tag}"),
                       lambda tmp: _write_dataset(tmp, seed, scenes))


def _write_dataset(tmp: Path, seed: int, scenes: tuple[int, int, int]) -> None:
    (tmp / "images").mkdir()
    rng = np.random.default_rng(seed)
    rows: list[dict[str, str]] = []
    count = 0
    for split, n in zip(("train", "val", "test"), scenes):
        seen: dict[str, Counter[str]] = {}
        for _ in range(n):
            rows.extend(_scene_rows(tmp, f"scene{count:06d}", split, seen, rng))
            count += 1
    frame = pd.DataFrame(rows)
    frame.insert(0, "id", [f"q{k:06d}" for k in range(len(frame))])
    frame.to_csv(tmp / "records.csv", index=False)


def _scene_rows(root: Path, image_id: str, split: str, seen: dict[str, Counter[str]],
                rng: np.random.Generator) -> list[dict[str, str]]:
    scene = random_scene(rng)
    render(scene, rng).save(root / "images" / f"{image_id}.png")
    picked = pick_questions(candidate_questions(scene), seen, rng, QUESTIONS_PER_IMAGE)
    return [{"image": f"images/{image_id}.png", "question": q, "answer": a, "question_type": kind,
             "image_id": image_id, "split": split} for kind, q, a in picked]
