"""The typed, validated run configuration.

One :class:`RunConfig` describes a retraining run. It is built at the edge — from Airflow Params
(:meth:`RunConfig.from_params`), CLI flags or a JSON file — validated in ``__post_init__``, and then
passed down unchanged. Unknown keys are refused with the list of known ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from painting_ml.exceptions import ConfigError

OPTIMIZERS = ("adam", "rmsprop", "sgd")
STRATEGIES = ("top",)
BACKBONES = ("resnet50",)
OFFLINE_TRANSFORMS = ("hflip", "vflip", "hvflip", "rot90", "rot180", "rot270")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):
        raise ConfigError(f"{name}={value!r} is out of range; use a value in [{low}, {high}]")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


@dataclass(frozen=True)
class RunConfig:
    """Everything one retraining run depends on.

    Attributes:
        data_dir: folder in the Kaggle layout (``all_data_info.csv`` and/or ``train_info.csv``,
            ``train*/`` and ``test/`` image folders).
        n_artists: how many artists to train on.
        strategy: artist selection strategy (``top``: most usable paintings, equalised to the smallest).
        min_per_artist: artists with fewer usable paintings are never selected.
        val_fraction, test_fraction: stratified split fractions (the rest is train).
        augment: offline transforms materialised for the train split.
        backbone: the CNN (ResNet50).
        weights: ``None`` (random init) or a local weights-file path (no network here).
        image_size: square training size in pixels.
        batch_size, epochs, optimizer, learning_rate: the optimisation.
        dropout, l2: head regularisation.
        bn_momentum: BatchNormalization momentum; 0.9 lets the moving statistics settle on small
            sets (Keras' 0.99 leaves inference-mode accuracy at chance after ~100 steps).
        seed: one seed for selection, split, augmentation and weight init.
        wandb: log the run to Weights & Biases (mode from ``WANDB_MODE``, offline by default).
    """

    data_dir: str
    n_artists: int = 10
    strategy: str = "top"
    min_per_artist: int = 4
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    augment: tuple[str, ...] = ("hflip",)
    backbone: str = "resnet50"
    weights: str | None = None
    image_size: int = 64
    batch_size: int = 32
    epochs: int = 3
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    dropout: float = 0.4
    l2: float = 0.01
    bn_momentum: float = 0.9
    seed: int = 42
    wandb: bool = True
    mosaic_thumb: int = 96
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data_dir, str) or not self.data_dir.strip():
            raise ConfigError("data_dir is empty; pass the folder that holds all_data_info.csv")
        if isinstance(self.augment, list):
            object.__setattr__(self, "augment", tuple(self.augment))
        for name in ("n_artists", "min_per_artist", "image_size", "batch_size", "epochs", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}={value!r} must be an integer")
        _check_range("n_artists", self.n_artists, 2, 1000)
        _check_range("min_per_artist", self.min_per_artist, 3, 100_000)
        _check_range("image_size", self.image_size, 32, 1024)
        _check_range("batch_size", self.batch_size, 1, 4096)
        _check_range("epochs", self.epochs, 1, 1000)
        _check_range("seed", self.seed, 0, 2**31 - 1)
        _check_range("val_fraction", self.val_fraction, 0.05, 0.5)
        _check_range("test_fraction", self.test_fraction, 0.05, 0.5)
        if self.val_fraction + self.test_fraction >= 0.8:
            raise ConfigError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction} "
                "leaves too little to train on; keep their sum below 0.8"
            )
        _check_range("learning_rate", self.learning_rate, 1e-7, 10.0)
        _check_range("dropout", self.dropout, 0.0, 0.95)
        _check_range("l2", self.l2, 0.0, 1.0)
        _check_range("bn_momentum", self.bn_momentum, 0.0, 0.999)
        _check_range("mosaic_thumb", self.mosaic_thumb, 16, 512)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("backbone", self.backbone, BACKBONES)
        for t in self.augment:
            _check_choice("augment transform", t, OFFLINE_TRANSFORMS)
        if self.weights in ("", "none", "None"):
            object.__setattr__(self, "weights", None)

    # --- construction at the edge -------------------------------------------------------------
    @classmethod
    def known_keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RunConfig:
        """Build from a mapping (Airflow Params, JSON); unknown keys are refused."""
        known = set(cls.known_keys())
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(map(repr, unknown))}; known keys: "
                + ", ".join(sorted(known))
            )
        values = {k: v for k, v in params.items() if v is not None or k == "weights"}
        if "augment" in values and isinstance(values["augment"], str):
            values["augment"] = tuple(t for t in values["augment"].split(",") if t.strip())
        try:
            return cls(**values)
        except TypeError as exc:  # a required key is missing
            raise ConfigError(f"invalid run config: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra")
        d["augment"] = list(self.augment)
        return d

    def selection_key(self) -> dict[str, Any]:
        """The fields a dataset version depends on (selection + split)."""
        keys = ("n_artists", "strategy", "min_per_artist", "val_fraction", "test_fraction", "seed")
        return {k: getattr(self, k) for k in keys}

    def fingerprint(self) -> str:
        """Stable short hash of the whole config."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
