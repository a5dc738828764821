"""Audio: a sound file (or the audio track of a video file) as a log-mel spectrogram."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from polymodal.modalities.base import (
    FILE_FORM,
    CorruptionPart,
    Modality,
    Preprocess,
    ServerInput,
    file_schema,
    kernel,
    register,
)
from polymodal.schema import Component, ModalityBase


class AudioSpec(ModalityBase):
    type: Literal["audio"]
    sample_rate: int = Field(16000, ge=1000)
    n_mels: int = Field(40, ge=8)
    hop_ms: float = Field(10.0, ge=1.0, le=25.0, description="log_mel frontend: milliseconds between the 25 ms "
                          "windows; 20 halves the frames, and with them the audio encoder's cost")
    max_seconds: float = Field(2.0, gt=0)
    frontend: Literal["log_mel", "aisfx"] = Field(
        "log_mel", description="log_mel: 25 ms windows, n_mels bands, normalised by training statistics | aisfx: "
                               "the aiSFX model's spectrogram (needs sample_rate 44100, n_mels 96)")

    @model_validator(mode="after")
    def _frontend_rate(self) -> AudioSpec:
        if self.frontend == "aisfx" and (self.sample_rate != 44100 or self.n_mels != 96):
            raise ValueError("frontend aisfx: set sample_rate: 44100 and n_mels: 96 (what the aiSFX model was "
                             "trained on)")
        return self
    source: Literal["file", "video"] = Field(
        "file", description="file: an audio file (wav, flac, ...) | video: the audio track of a video file (PyAV)")
    utterance_norm: Literal["none", "mean", "mean_std"] = Field(
        "mean", description="log_mel frontend: per record and band, subtract the mean over the record's time "
                                "steps (mean) and divide by their std (mean_std) before the training statistics; "
                                "removes the record's gain and channel colouring | none: training statistics only")
    spec_augment: bool = Field(False, description="while training: zero 2 random mel-band spans (up to 15% of the "
                                                 "bands each) and 2 time spans (up to 10% of the steps each)")
    speed_perturb: float = Field(0.15, ge=0.0, lt=1.0, description="while training: stretch each record's time "
                                 "axis by a random factor in [1/(1+x), 1+x]; 0 turns it off")
    freq_warp: float = Field(0.1, ge=0.0, lt=0.5, description="while training: stretch each record's mel axis by "
                             "a random factor in [1-x, 1+x] (vocal tract length perturbation); 0 turns it off")


def describe(spec: AudioSpec, state: str) -> str:
    return (f"mel (B, T, {spec.n_mels}) float32: mono, resampled to {spec.sample_rate} Hz as "
            f"scipy.signal.resample_poly does (Kaiser window, beta 5), cut to {spec.max_seconds} s; "
            "log(mel power + 1e-6) of 25 ms periodic Hann windows centred in a power-of-2 FFT frame every "
            f"{spec.hop_ms:g} ms, "
            f"no edge padding (HTK mel filterbank, {spec.n_mels} bands), "
            + utterance_words(spec.utterance_norm)
            + f"then (x - mean) / std per band (mean/std: {state}), padding steps 0; "
            "mask (B, T) bool: True for real steps")


def utterance_words(mode: str) -> str:
    return {"none": "", "mean": "minus the record's own mean per band over its steps, ",
            "mean_std": "minus the record's own mean per band over its steps and divided by its own std "
                        "(floored at 1e-3), "}[mode]


AUDIO = register(Modality(
    name="audio",
    spec=AudioSpec,
    processor="polymodal.processors.audio:AudioProcessor",
    encoder=Component(name="audio_cnn"),
    corruptions=(
        CorruptionPart("noise", kernel("audio_noise"), (20.0, 10.0, 5.0, 0.0, -5.0)),
        CorruptionPart("clipping", kernel("audio_clipping"), (0.80, 0.50, 0.30, 0.15, 0.05)),
        CorruptionPart("time_mask", kernel("audio_time_mask"), (0.10, 0.20, 0.30, 0.45, 0.60)),
    ),
    server=ServerInput("file", file_schema("audio"), FILE_FORM),
    describe=describe,
    preprocess=Preprocess("audio", time_axis="mel"),  # log_mel audio files; the reader refuses other settings
    extensions=(".wav", ".flac", ".mp3", ".ogg"),
))
