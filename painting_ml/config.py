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
from painting_ml.transforms import FIXED, is_transform

OPTIMIZERS = ("adam", "rmsprop", "sgd", "adamw")
STRATEGIES = ("top", "balanced", "capped", "list")
BACKBONES = ("resnet50", "resnet101", "resnet18")
TARGETS = ("artist", "style", "genre")
FINE_TUNE_MODES = ("all", "frozen", "last_k", "two_phase")
POOLINGS = ("avg", "max")
OFFLINE_TRANSFORMS = FIXED


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
        strategy: artist selection: ``top``, ``balanced``, ``capped`` or ``list`` (see selection.py).
        artists: the explicit artist list (``strategy="list"``; setting it implies ``list``).
        cap: per-artist maximum for ``capped``.
        min_per_artist: artists with fewer usable paintings are never selected.
        class_weights: weight the loss by inverse class frequency (matters for ``capped``).
        unseen_limit: paintings of non-selected artists kept as the "unseen artists" set.
        val_fraction, test_fraction: stratified split fractions (the rest is train).
        augment: offline transforms materialised for the train split.
        online_augment: random affine augmentation inside the model while training (one fused
            Keras layer): rotation ``aug_rotation`` degrees, shift ``aug_shift``, shear factor
            ``aug_shear``, zoom ``aug_zoom``, horizontal flip ``aug_hflip`` — the seed's ranges.
        resize_mode: ``crop`` (centre crop) or ``pad`` to a square, aspect ratio kept.
        cache: decoded images cached in ``memory``, on ``disk`` or ``none``.
        backbone: the CNN: ``resnet50`` (default), ``resnet101`` (keras.applications) or
            ``resnet18`` (basic-block ResNet written here; Keras has none).
        weights: ``None`` (random init), ``imagenet`` (Keras downloads it where the network
            allows) or a local weights-file path of the backbone without its top — the offline path.
        targets: what the model predicts: ``artist`` alone, or two or three of artist / style /
            genre trained jointly (the artist always included); ``loss_weights`` weighs each
            output's loss (missing ones weigh 1).
        fine_tune: ``all`` (train everything), ``frozen`` (backbone frozen, head only),
            ``last_k`` (the last ``fine_tune_stages`` of the five ResNet stages trainable) or
            ``two_phase`` (``head_epochs`` with the backbone frozen, then the last
            ``fine_tune_stages`` stages — 5 = all — at ``learning_rate * fine_tune_lr_factor``).
            Frozen BatchNormalization layers run in inference mode.
        image_size: square training size in pixels.
        batch_size, epochs, optimizer, learning_rate: the optimisation; ``momentum`` and
            ``nesterov`` apply to sgd, ``weight_decay`` to adamw.
        gradient_accumulation_steps: apply the summed gradients every N batches (Keras'
            optimizer option), an effective batch of ``batch_size * N``.
        label_smoothing: cross-entropy label smoothing.
        lr_patience, early_stopping_patience: ReduceLROnPlateau (factor 0.1, min 1e-6) and
            EarlyStopping patience in epochs (0 turns early stopping off).
        pooling, head_units, dropout, l2: the head: global pooling, a ReLU dense layer of
            ``head_units`` (0 = none), dropout, and L2 on the dense kernels.
        bn_momentum: BatchNormalization momentum; 0.9 lets the moving statistics settle on small
            sets (Keras' 0.99 leaves inference-mode accuracy at chance after ~100 steps).
        seed: one seed for selection, split, augmentation and weight init.
        optimizers: the optimizer sweep of the retraining DAG: one mapped training per name, then
            the best by validation accuracy goes to the promotion gate.
        max_recall_drop: promotion gate: the most (percentage points) any artist's recall may fall
            against the champion.
        wandb: log the run to Weights & Biases (mode from ``WANDB_MODE``, offline by default).
        mosaic_thumb, mosaic_columns, mosaic_max_tiles: mosaic thumbnail size (px), grid columns
            and the most thumbnails per mosaic.
    """

    data_dir: str
    n_artists: int = 10
    strategy: str = "top"
    artists: tuple[str, ...] = ()
    cap: int = 500
    min_per_artist: int = 4
    class_weights: bool = True
    unseen_limit: int = 200
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    augment: tuple[str, ...] = ("hflip",)
    online_augment: bool = True
    aug_rotation: float = 20.0
    aug_shift: float = 0.2
    aug_shear: float = 0.2
    aug_zoom: float = 0.2
    aug_hflip: bool = True
    resize_mode: str = "crop"
    cache: str = "memory"
    backbone: str = "resnet50"
    weights: str | None = None
    targets: tuple[str, ...] = ("artist",)
    loss_weights: dict[str, float] = field(default_factory=dict)
    fine_tune: str = "all"
    fine_tune_stages: int = 1
    head_epochs: int = 1
    fine_tune_lr_factor: float = 0.1
    image_size: int = 64
    batch_size: int = 32
    epochs: int = 3
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    gradient_accumulation_steps: int = 1
    label_smoothing: float = 0.0
    lr_patience: int = 2
    early_stopping_patience: int = 5
    pooling: str = "avg"
    head_units: int = 256
    dropout: float = 0.4
    l2: float = 0.01
    bn_momentum: float = 0.9
    seed: int = 42
    wandb: bool = True
    optimizers: tuple[str, ...] = ("adam", "rmsprop", "sgd")
    max_recall_drop: float = 5.0
    mosaic_thumb: int = 96
    mosaic_columns: int = 6
    mosaic_max_tiles: int = 36
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data_dir, str) or not self.data_dir.strip():
            raise ConfigError("data_dir is empty; pass the folder that holds all_data_info.csv")
        for name in ("augment", "targets", "optimizers"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [t.strip() for t in value.split(",") if t.strip()]
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.artists, (list, str)):
            names = self.artists.split(",") if isinstance(self.artists, str) else self.artists
            object.__setattr__(self, "artists", tuple(a.strip() for a in names if a.strip()))
        if self.artists:
            if self.strategy not in ("top", "list"):
                raise ConfigError(f"artists=[...] selects artists by name; it cannot be combined with strategy={self.strategy!r}")
            object.__setattr__(self, "strategy", "list")
            object.__setattr__(self, "n_artists", len(self.artists))
        elif self.strategy == "list":
            raise ConfigError("strategy='list' needs artists=[...]: the names of the artists to train on")
        for name in ("n_artists", "min_per_artist", "image_size", "batch_size", "epochs", "seed", "cap",
                     "unseen_limit", "mosaic_columns", "mosaic_max_tiles", "mosaic_thumb", "fine_tune_stages", "head_epochs", "gradient_accumulation_steps",
                     "lr_patience", "early_stopping_patience", "head_units"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}={value!r} must be an integer")
        _check_range("n_artists", self.n_artists, 2, 1000)
        _check_range("min_per_artist", self.min_per_artist, 3, 100_000)
        _check_range("cap", self.cap, 3, 10_000_000)
        _check_range("unseen_limit", self.unseen_limit, 0, 10_000_000)
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
        _check_range("momentum", self.momentum, 0.0, 0.999)
        _check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        _check_range("gradient_accumulation_steps", self.gradient_accumulation_steps, 1, 1024)
        _check_range("label_smoothing", self.label_smoothing, 0.0, 0.5)
        _check_range("lr_patience", self.lr_patience, 1, 1000)
        _check_range("early_stopping_patience", self.early_stopping_patience, 0, 1000)
        _check_range("head_units", self.head_units, 0, 8192)
        _check_range("fine_tune_stages", self.fine_tune_stages, 1, 5)
        _check_range("fine_tune_lr_factor", self.fine_tune_lr_factor, 1e-4, 1.0)
        _check_choice("fine_tune", self.fine_tune, FINE_TUNE_MODES)
        _check_choice("pooling", self.pooling, POOLINGS)
        if self.fine_tune == "two_phase":
            if not 1 <= self.head_epochs < self.epochs:
                raise ConfigError(f"fine_tune='two_phase' needs 1 <= head_epochs < epochs (got head_epochs="
                                  f"{self.head_epochs}, epochs={self.epochs}); raise epochs or lower head_epochs")
        for t in self.targets:
            _check_choice("target", t, TARGETS)
        if "artist" not in self.targets or len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"targets={list(self.targets)!r}: list artist once, plus optionally style "
                              "and/or genre, e.g. ['artist', 'style']")
        if not isinstance(self.loss_weights, dict):
            raise ConfigError(f"loss_weights={self.loss_weights!r} must map a target to a weight, "
                              "e.g. {'artist': 1.0, 'style': 0.5}")
        for t, w in self.loss_weights.items():
            if t not in self.targets:
                raise ConfigError(f"loss_weights names {t!r}, which is not among targets {list(self.targets)}")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 100:
                raise ConfigError(f"loss_weights[{t!r}]={w!r}; use a number in [0, 100]")
        _check_range("dropout", self.dropout, 0.0, 0.95)
        _check_range("l2", self.l2, 0.0, 1.0)
        _check_range("bn_momentum", self.bn_momentum, 0.0, 0.999)
        _check_range("mosaic_thumb", self.mosaic_thumb, 16, 512)
        _check_range("mosaic_columns", self.mosaic_columns, 1, 50)
        _check_range("mosaic_max_tiles", self.mosaic_max_tiles, 1, 10_000)
        _check_range("aug_rotation", self.aug_rotation, 0.0, 180.0)
        _check_range("aug_shift", self.aug_shift, 0.0, 0.9)
        _check_range("aug_shear", self.aug_shear, 0.0, 1.0)
        _check_range("aug_zoom", self.aug_zoom, 0.0, 0.9)
        _check_choice("resize_mode", self.resize_mode, ("crop", "pad"))
        _check_choice("cache", self.cache, ("memory", "disk", "none"))
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if not self.optimizers or len(set(self.optimizers)) != len(self.optimizers):
            raise ConfigError(f"optimizers={list(self.optimizers)!r}: list one or more distinct optimizers to "
                              f"compare, from {', '.join(OPTIMIZERS)}")
        for name in self.optimizers:
            _check_choice("optimizer", name, OPTIMIZERS)
        _check_range("max_recall_drop", self.max_recall_drop, 0.0, 100.0)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("backbone", self.backbone, BACKBONES)
        for t in self.augment:
            if not is_transform(t):
                _check_choice("augment transform", t, OFFLINE_TRANSFORMS + ("rot<degrees>, e.g. rot45",))
        if self.weights in ("", "none", "None"):
            object.__setattr__(self, "weights", None)
        if self.weights is not None and not isinstance(self.weights, str):
            raise ConfigError(f"weights={self.weights!r}: use none, imagenet or a weights-file path")

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
        if params.get("data_dir") in (None, ""):
            raise ConfigError("data_dir is missing; pass the folder that holds all_data_info.csv "
                              "(--data-dir on the command line, the data_dir Param in Airflow)")
        values = {k: v for k, v in params.items() if v is not None or k == "weights"}
        try:
            return cls(**values)
        except TypeError as exc:  # a required key is missing
            raise ConfigError(f"invalid run config: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra")
        d["augment"] = list(self.augment)
        d["artists"] = list(self.artists)
        d["targets"] = list(self.targets)
        d["optimizers"] = list(self.optimizers)
        return d

    def loss_weight(self, target: str) -> float:
        return float(self.loss_weights.get(target, 1.0))

    def selection_key(self) -> dict[str, Any]:
        """The fields a dataset version depends on (selection + split)."""
        keys = ("n_artists", "strategy", "artists", "cap", "min_per_artist", "val_fraction", "test_fraction",
                "seed", "unseen_limit")
        return {k: list(v) if isinstance(v, tuple) else v for k in keys for v in [getattr(self, k)]}

    def fingerprint(self) -> str:
        """Stable short hash of the whole config."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
