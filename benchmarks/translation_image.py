"""Does the picture help translation? BLEU/chrF on the built-in `emoji_translation` test split for
(1) the multimodal model (source text + image, configs/translation.yaml),
(2) the same model evaluated with the image marked missing for every record, and
(3) a text-only model (the same config without the image modality), trained separately,
overall and per variant (`full`: the whole English name; `masked`: one recurring word, such as face, heart,
woman or red, replaced by `___`).

    OMP_NUM_THREADS=1 python benchmarks/translation_image.py [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from polymodal.datasets.translation import materialize_emoji_translation
from polymodal.evaluation.text_metrics import bleu, chrf
from polymodal.factory import parse_config
from polymodal.predictor import Predictor
from polymodal.training.fit import train

CONFIG = Path(__file__).parents[1] / "configs" / "translation.yaml"


def configs(epochs: int | None, out: Path) -> dict[str, dict]:
    base = yaml.safe_load(CONFIG.read_text())
    base["training"]["progress_bar"] = False
    if epochs is not None:
        base["training"]["epochs"] = epochs
    text_only = copy.deepcopy(base)
    del text_only["modalities"]["image"]
    base["output_dir"], text_only["output_dir"] = str(out / "text_image"), str(out / "text_only")
    return {"text + image": base, "text only": text_only}


def scores(predictions: list[str], frame: pd.DataFrame, target: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for variant, part in [("all", frame), *frame.groupby("variant")]:
        hyp = [predictions[i] for i in part.index]
        refs = [[r] for r in part[target]]
        out[f"bleu_{variant}"], out[f"chrf_{variant}"] = bleu(hyp, refs), chrf(hyp, refs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override training.epochs of the config")
    parser.add_argument("--out", type=Path, default=Path("runs/translation_image"))
    args = parser.parse_args(argv)
    root = materialize_emoji_translation()
    table = pd.read_csv(root / "records.csv", keep_default_na=False)
    test = table[table.split == "test"].reset_index(drop=True)
    rows = []
    for name, raw in configs(args.epochs, args.out).items():
        start = time.perf_counter()
        result = train(parse_config(raw))
        seconds = time.perf_counter() - start
        predictor = Predictor.load(result.run_dir)
        target = predictor.run.config.target.field
        settings = [("image present", frozenset())] if "image" in raw["modalities"] else [("-", frozenset())]
        if "image" in raw["modalities"]:
            settings.append(("image missing at test", frozenset({"image"})))
        for setting, drop in settings:
            out = predictor.outputs(test, root=root, drop=drop)
            predictions = predictor.run.task.predict(predictor.run.task.scores(out))
            rows.append({"model": name, "evaluation": setting, **scores(predictions, test, target),
                         "epochs": result.epochs, "train_s": round(seconds)})
            if setting != "image missing at test":
                examples = test.assign(prediction=predictions)[test.variant == "masked"].head(8)
                print(f"\n{name}: masked sources\n" + examples[["source", target, "prediction"]].to_string())
    frame = pd.DataFrame(rows)
    print("\n" + frame.round(2).to_string(index=False))
    command = "OMP_NUM_THREADS=1 python benchmarks/translation_image.py " + " ".join(sys.argv[1:])
    results = Path(__file__).parent / "results" / "translation_image.md"
    results.write_text(
        f"`{command.strip()}` (OMP_NUM_THREADS=1, shared 2-core CPU machine)\n\n"
        f"Built-in emoji_translation, test split ({len(test)} records: {int((test.variant == 'full').sum())} full, "
        f"{int((test.variant == 'masked').sum())} masked sources); configs/translation.yaml; sacrebleu corpus BLEU and "
        "chrF (0..100) against the German CLDR names. `*_masked`: sources with one recurring English word (face, "
        "heart, woman, red, ...) replaced by `___`, which only the picture can restore.\n\n"
        + frame.round(2).to_markdown(index=False) + "\n")
    print(f"\nwritten: {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
