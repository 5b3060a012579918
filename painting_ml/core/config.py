"""The run configuration: one declarative schema, the single source of truth.

:class:`RunConfig` is a pydantic model. Each field carries its type, range or enum, a title, a
description and a form *section*. From this class, and only from it, come:

- the Airflow trigger form (``painting_ml.orchestration.params.run_params``),
- the CLI flags of ``painting-ml run/train`` (``painting_ml.cli.flags``),
- the README's configuration table (:func:`markdown_table`; a test keeps the README in step),
- every validation message: :class:`~painting_ml.core.errors.ConfigError` naming the field, the
  value and what is allowed.

A config is built at the edge (Params, flags, ``--set``, a JSON file) and passed down unchanged.
This module imports neither TensorFlow nor Keras (an import-linter contract keeps it so).

The defaults are the production recipe (ResNet50 at 224 px from the deployment's ImageNet weights
file, two-phase fine-tuning, Adam, 30 epochs with early stopping; the README justifies each value).
A deployment overrides them field by field with a defaults file (:func:`read_defaults_file`,
``PAINTING_RUN_DEFAULTS``); the CPU demo and the tests pass :data:`CPU_DEMO` explicitly.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from painting_ml.core.errors import ConfigError
from painting_ml.core.settings import RESNET50_NOTOP_FILE, env_name, get_settings, read_setting_file
from painting_ml.core.transforms import FIXED, TRANSFORM_PATTERN, is_transform


class Strategy(StrEnum):
    """How the artists of a run are chosen (painting_ml.data.selection)."""

    TOP = "top"
    BALANCED = "balanced"
    CAPPED = "capped"
    LIST = "list"


class Backbone(StrEnum):
    RESNET50 = "resnet50"
    RESNET101 = "resnet101"
    RESNET18 = "resnet18"


class Target(StrEnum):
    ARTIST = "artist"
    STYLE = "style"
    GENRE = "genre"


class FineTune(StrEnum):
    ALL = "all"
    FROZEN = "frozen"
    LAST_K = "last_k"
    TWO_PHASE = "two_phase"


class Optimizer(StrEnum):
    ADAM = "adam"
    ADAMW = "adamw"
    RMSPROP = "rmsprop"
    SGD = "sgd"


class Pooling(StrEnum):
    AVG = "avg"
    MAX = "max"


class ResizeMode(StrEnum):
    CROP = "crop"
    PAD = "pad"


class CacheMode(StrEnum):
    MEMORY = "memory"
    DISK = "disk"
    NONE = "none"


class Section(StrEnum):
    """Form sections of the trigger UI, in the order they are shown."""

    DATA = "Data"
    QUALITY = "Data-quality gate"
    AUGMENTATION = "Augmentation"
    MODEL = "Model"
    OPTIMISATION = "Optimisation"
    EVALUATION = "Evaluation and promotion"
    ARTIFACTS = "Artifacts and tracking"


Transform = Annotated[str, StringConstraints(pattern=TRANSFORM_PATTERN)]


def _field(default: Any, section: Section, title: str, description: str, **constraints: Any) -> Any:
    """A config field: default, form section, title, description and JSON-schema constraints."""
    return Field(default, title=title, description=description, json_schema_extra={"section": section.value},
                 **constraints)


_LIST_FIELDS = ("artists", "augment", "targets", "optimizers")

#: Deployment settings a run cannot change: Airflow reads them when it parses the DAG file, so they
#: are environment variables (:mod:`painting_ml.core.settings`), refused here by name.
_DEPLOYMENT_KEYS = ("train_timeout_minutes",)


def _deployment_weights() -> str | None:
    """The deployment's weights (``PAINTING_WEIGHTS``): the default of ``RunConfig.weights``."""
    return get_settings().weights


class RunConfig(BaseModel):
    """Everything one retraining run depends on. See each field's ``description``."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=True, validate_default=True)

    #: Fields a dataset version depends on (selection + split): same values, same version.
    SELECTION_FIELDS: ClassVar[tuple[str, ...]] = (
        "n_artists", "strategy", "artists", "cap", "min_per_artist", "val_fraction", "test_fraction", "seed",
        "unseen_limit")

    # --- Data ---------------------------------------------------------------------------------
    data_dir: str = _field(..., Section.DATA, "Data folder",
                           "Folder in the Kaggle layout: all_data_info.csv and/or train_info.csv, train*/ and "
                           "test/ image folders.", min_length=1)
    n_artists: int = _field(10, Section.DATA, "Artists",
                            "How many artists to train on (ignored when `artists` lists them).", ge=2, le=1000)
    strategy: Strategy = _field(Strategy.TOP, Section.DATA, "Artist selection",
                                "top: most usable paintings, equalised; balanced: the N with the most similar "
                                "counts; capped: top N undersampled to `cap`; list: the names in `artists`.")
    artists: tuple[str, ...] = _field((), Section.DATA, "Artist list",
                                      "Explicit artist names (implies strategy=list); empty for the other "
                                      "strategies.")
    cap: int = _field(500, Section.DATA, "Per-artist cap", "Most paintings per artist for strategy=capped.",
                      ge=3, le=10_000_000)
    min_per_artist: int = _field(4, Section.DATA, "Minimum paintings per artist",
                                 "Artists with fewer usable paintings are never selected.", ge=3, le=100_000)
    class_weights: bool = _field(True, Section.DATA, "Class weights",
                                 "Weight the loss by inverse class frequency (matters for strategy=capped).")
    exclude_conflicting_duplicates: bool = _field(
        True, Section.DATA, "Exclude conflicting duplicates",
        "Leave out every painting of a duplicate group whose copies carry different artists (one picture, "
        "two labels: see the conflicting_duplicates view).")
    unseen_limit: int = _field(200, Section.DATA, "Unseen-artist paintings",
                               "Paintings of non-selected artists kept as the open-set / verification set.",
                               ge=0, le=10_000_000)
    val_fraction: float = _field(0.15, Section.DATA, "Validation fraction",
                                 "Stratified validation share of each artist's paintings.", ge=0.05, le=0.5)
    test_fraction: float = _field(0.2, Section.DATA, "Test fraction",
                                  "Stratified test share of each artist's paintings.", ge=0.05, le=0.5)
    seed: int = _field(42, Section.DATA, "Seed",
                       "One seed for selection, split, augmentation and weight init.", ge=0, le=2**31 - 1)

    # --- Data-quality gate (the validate task, before any GPU time is spent) -------------------
    max_reject_rate: float = _field(0.10, Section.QUALITY, "Max reject rate",
                                    "Fail when more than this share of the data folder's CSV rows were rejected "
                                    "at ingest (missing, broken or unsafe files).", ge=0, le=1)
    warn_reject_rate: float = _field(0.02, Section.QUALITY, "Reject rate warning",
                                     "Log and report a warning above this reject share.", ge=0, le=1)
    min_split_paintings: int = _field(10, Section.QUALITY, "Min paintings per artist per split",
                                      "Fail when a selected artist has fewer paintings than this in train, "
                                      "val or test (per-artist recall on fewer is noise).", ge=1, le=100_000)
    warn_split_paintings: int = _field(25, Section.QUALITY, "Paintings per split warning",
                                       "Warn when a selected artist has fewer than this in a split.",
                                       ge=1, le=100_000)
    max_drift: float = _field(0.5, Section.QUALITY, "Max drift",
                              "Fail when, against the previous dataset version of the same selection, an "
                              "artist's count changed by more than this share, this share of the artists was "
                              "replaced, or the median image side moved by more than this share.",
                              ge=0, le=100)
    warn_drift: float = _field(0.2, Section.QUALITY, "Drift warning", "Warn above this drift (same measures).",
                               ge=0, le=100)

    # --- Augmentation -------------------------------------------------------------------------
    augment: tuple[Transform, ...] = _field(("hflip",), Section.AUGMENTATION, "Offline augmentation",
                                            "Transforms materialised once for the train split: hflip, vflip, "
                                            "hvflip, rot90, rot180, rot270 or rot<degrees> (e.g. rot45: "
                                            "rotated and cropped to the inscribed rectangle).")
    online_augment: bool = _field(True, Section.AUGMENTATION, "Online augmentation",
                                  "Random affine augmentation inside the model while training (one fused "
                                  "Keras layer) with the ranges below.")
    aug_rotation: float = _field(20.0, Section.AUGMENTATION, "Rotation (degrees)",
                                 "Online augmentation: random rotation up to this many degrees.", ge=0, le=180)
    aug_shift: float = _field(0.2, Section.AUGMENTATION, "Shift",
                              "Online augmentation: random shift as a fraction of the side.", ge=0, le=0.9)
    aug_shear: float = _field(0.2, Section.AUGMENTATION, "Shear", "Online augmentation: shear factor.",
                              ge=0, le=1)
    aug_zoom: float = _field(0.2, Section.AUGMENTATION, "Zoom", "Online augmentation: random zoom range.",
                             ge=0, le=0.9)
    aug_hflip: bool = _field(True, Section.AUGMENTATION, "Random horizontal flip",
                             "Online augmentation: flip half of the images horizontally.")
    resize_mode: ResizeMode = _field(ResizeMode.CROP, Section.AUGMENTATION, "Resize mode",
                                     "crop: centre crop to a square; pad: pad to a square (aspect ratio kept).")
    cache: CacheMode = _field(CacheMode.DISK, Section.AUGMENTATION, "Decoded-image cache",
                              "Cache decoded, resized training images on the worker's disk (memory stays flat "
                              "whatever the set size), in memory (~150 KB per 224 px image) or not at all.")

    # --- Model --------------------------------------------------------------------------------
    backbone: Backbone = _field(Backbone.RESNET50, Section.MODEL, "Backbone",
                                "resnet50, resnet101 (keras.applications) or resnet18 (basic blocks).")
    weights: str | None = Field(
        default_factory=_deployment_weights, title="Backbone weights",
        description="The path of a local weights file of the backbone without its top (default: "
                    "PAINTING_WEIGHTS, the Keras ImageNet file on the weights volume); 'imagenet' where downloads "
                    "work; empty: random init (the CPU demo).",
        json_schema_extra={"section": Section.MODEL.value,
                           "default_doc": f"$PAINTING_WEIGHTS (.../weights/{RESNET50_NOTOP_FILE})"})
    targets: tuple[Target, ...] = _field(("artist",), Section.MODEL, "Targets",
                                         "What the model predicts: artist, plus style and/or genre for "
                                         "multi-task.", min_length=1, max_length=3)
    loss_weights: dict[Target, Annotated[float, Field(ge=0, le=100)]] = _field(
        {}, Section.MODEL, "Loss weights", "Per-target loss weight, e.g. {\"style\": 0.5}; missing = 1.")
    image_size: int = _field(224, Section.MODEL, "Image size (px)",
                             "Square training size: 224 (ImageNet's) on a GPU; 32-64 on CPU.", ge=32, le=1024)
    pooling: Pooling = _field(Pooling.AVG, Section.MODEL, "Pooling", "Global pooling after the backbone.")
    head_units: int = _field(256, Section.MODEL, "Head units",
                             "ReLU dense layer before the outputs (0 = none).", ge=0, le=8192)
    dropout: float = _field(0.4, Section.MODEL, "Dropout", "Dropout before the output layers.", ge=0, le=0.95)
    l2: float = _field(0.01, Section.MODEL, "L2", "L2 penalty on the head's dense kernels.", ge=0, le=1)
    bn_momentum: float = _field(0.9, Section.MODEL, "BatchNorm momentum",
                                "0.9 lets the moving statistics settle on small sets (Keras' 0.99 leaves "
                                "inference-mode accuracy at chance after ~100 steps).", ge=0, le=0.999)
    fine_tune: FineTune = _field(FineTune.TWO_PHASE, Section.MODEL, "Fine-tuning",
                                 "all: train everything; frozen: head only; last_k: the last "
                                 "`fine_tune_stages` stages; two_phase: head first, then unfreeze at a lower "
                                 "LR. Frozen and pretrained BatchNormalization layers run in inference mode.")
    fine_tune_stages: int = _field(2, Section.MODEL, "Stages to fine-tune",
                                   "ResNet stages (of 5) trained by last_k and by two_phase's second phase.",
                                   ge=1, le=5)
    head_epochs: int = _field(5, Section.MODEL, "Head epochs (two_phase)",
                              "Epochs of phase 1 (backbone frozen) in two_phase; must be < epochs.",
                              ge=1, le=1000)
    fine_tune_lr_factor: float = _field(0.1, Section.MODEL, "Fine-tune LR factor",
                                        "two_phase: phase 2 learning rate = learning_rate x this.",
                                        ge=1e-4, le=1)

    # --- Optimisation -------------------------------------------------------------------------
    epochs: int = _field(30, Section.OPTIMISATION, "Epochs", "Training epochs (early stopping may end sooner).",
                         ge=1, le=1000)
    batch_size: int = _field(32, Section.OPTIMISATION, "Batch size", "Images per training step.", ge=1, le=4096)
    optimizer: Optimizer = _field(Optimizer.ADAM, Section.OPTIMISATION, "Optimizer",
                                  "The optimizer of a single run (the DAG sweeps `optimizers`).")
    optimizers: tuple[Optimizer, ...] = _field(
        ("adam",), Section.OPTIMISATION, "Optimizers to compare",
        "One mapped training per optimizer; the best by validation accuracy goes to the promotion gate. One "
        "by default; list several (e.g. adam, rmsprop, sgd) to sweep.",
        min_length=1)
    learning_rate: float = _field(1e-3, Section.OPTIMISATION, "Learning rate",
                                  "Initial learning rate (reduced on plateau).", gt=0, le=10)
    momentum: float = _field(0.9, Section.OPTIMISATION, "Momentum (sgd)", "SGD momentum.", ge=0, le=0.999)
    nesterov: bool = _field(False, Section.OPTIMISATION, "Nesterov (sgd)", "Nesterov momentum for SGD.")
    weight_decay: float = _field(1e-4, Section.OPTIMISATION, "Weight decay (adamw)", "AdamW weight decay.",
                                 ge=0, le=1)
    gradient_accumulation_steps: int = _field(4, Section.OPTIMISATION, "Gradient accumulation steps",
                                              "Apply gradients every N batches (effective batch N x batch "
                                              "size).", ge=1, le=1024)
    label_smoothing: float = _field(0.0, Section.OPTIMISATION, "Label smoothing", "Cross-entropy label smoothing.",
                                    ge=0, le=0.5)
    lr_patience: int = _field(2, Section.OPTIMISATION, "LR patience (epochs)",
                              "ReduceLROnPlateau patience (factor 0.1, min 1e-6).", ge=1, le=1000)
    early_stopping_patience: int = _field(5, Section.OPTIMISATION, "Early-stopping patience (epochs)",
                                          "EarlyStopping patience; 0 turns early stopping off.", ge=0, le=1000)

    # --- Evaluation and promotion -------------------------------------------------------------
    max_recall_drop: float = _field(5.0, Section.EVALUATION, "Max recall drop (points)",
                                    "Promotion gate: the most any artist's recall may fall against the "
                                    "champion.", ge=0, le=100)
    min_macro_f1: float = _field(0.3, Section.EVALUATION, "Minimum macro-F1",
                                 "Promotion gate floor: a candidate whose test macro-F1 is under this is never "
                                 "promoted, even when there is no champion.", ge=0, le=1)
    allow_artist_set_change: bool = _field(False, Section.EVALUATION, "Allow a new artist set",
                                           "Promote a candidate trained on a different artist set than the "
                                           "champion's (the two cannot be compared on the same test paintings). "
                                           "Off: such a candidate is recorded, not promoted.")

    # --- Artifacts and tracking ---------------------------------------------------------------
    mosaic_thumb: int = _field(96, Section.ARTIFACTS, "Mosaic thumbnail size (px)",
                               "Longest side of each painting in the mosaics (aspect ratio kept).", ge=16, le=512)
    mosaic_columns: int = _field(6, Section.ARTIFACTS, "Mosaic columns", "Thumbnails per row in the mosaics.",
                                 ge=1, le=50)
    mosaic_max_tiles: int = _field(36, Section.ARTIFACTS, "Mosaic size", "Most thumbnails per mosaic.",
                                   ge=1, le=10_000)
    wandb: bool = _field(True, Section.ARTIFACTS, "Log to wandb",
                         "Log the run to Weights & Biases (mode from WANDB_MODE, offline by default).")

    # --- construction -------------------------------------------------------------------------
    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(explain(exc, type(self))) from None

    @field_validator("*", mode="before")
    @classmethod
    def _normalise(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name
        if name is None:  # "*" validators always run for a field
            return value
        annotation = cls.model_fields[name].annotation
        if annotation in (int, float) and isinstance(value, bool):
            raise ValueError("is a boolean, not a number")
        if annotation is bool and not isinstance(value, bool):
            # Booleans are booleans: 1, "yes" or "1" are refused rather than guessed.
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError("is not a boolean")
        if name in _LIST_FIELDS and isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if name == "loss_weights" and isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError('is not a JSON object such as {"style": 0.5}') from None
        if name == "weights" and value in ("", "none", "None"):
            return None
        return value

    @model_validator(mode="before")
    @classmethod
    def _artists_imply_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("artists"):
            data = dict(data)
            names = data["artists"]
            names = names.split(",") if isinstance(names, str) else names
            data["artists"] = [str(a).strip() for a in names if str(a).strip()]
            if data.get("strategy", "top") not in ("top", "list"):
                raise ValueError(f"artists=[...] selects artists by name; it cannot be combined with "
                                 f"strategy={data['strategy']!r}")
            data["strategy"] = "list"
            data["n_artists"] = max(2, len(data["artists"]))
        return data

    @model_validator(mode="after")
    def _check_together(self) -> RunConfig:
        if self.strategy == "list" and len(self.artists) < 2:
            raise ValueError("strategy='list' needs artists=[...]: the names of two or more artists to train on")
        if self.val_fraction + self.test_fraction >= 0.8:
            raise ValueError(f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} leaves too "
                             "little to train on; keep their sum below 0.8")
        if self.fine_tune == "two_phase" and not self.head_epochs < self.epochs:
            raise ValueError(f"fine_tune='two_phase' needs 1 <= head_epochs < epochs (got head_epochs="
                             f"{self.head_epochs}, epochs={self.epochs}); raise epochs or lower head_epochs")
        if "artist" not in self.targets or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"targets={list(self.targets)!r}: list artist once, plus optionally style and/or "
                             "genre, e.g. ['artist', 'style']")
        for t in self.loss_weights:
            if t not in self.targets:
                raise ValueError(f"loss_weights names {t!r}, which is not among targets {list(self.targets)}")
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ValueError(f"optimizers={list(self.optimizers)!r}: list each optimizer once")
        for warn, fail, worse in (("warn_reject_rate", "max_reject_rate", "above"),
                                  ("warn_drift", "max_drift", "above")):
            if getattr(self, warn) > getattr(self, fail):
                raise ValueError(f"{warn}={getattr(self, warn):g} is {worse} {fail}={getattr(self, fail):g}; the "
                                 "warning level must come before the failing one")
        if self.warn_split_paintings < self.min_split_paintings:
            raise ValueError(f"warn_split_paintings={self.warn_split_paintings} is below min_split_paintings="
                             f"{self.min_split_paintings}; the warning level must come before the failing one")
        for transform in self.augment:
            if not is_transform(transform):
                raise ValueError(f"augment transform {transform!r} is not a rotation in (0, 360); use "
                                 f"{', '.join(FIXED)} or rot<degrees>")
        return self

    @classmethod
    def known_keys(cls) -> list[str]:
        return list(cls.model_fields)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RunConfig:
        """Build from a mapping (Airflow Params, JSON, CLI); unknown keys are refused by name."""
        if params.get("data_dir") in (None, ""):
            raise ConfigError("data_dir is missing; pass the folder that holds all_data_info.csv "
                              "(--data-dir on the command line, the data_dir Param in Airflow)")
        return cls(**{k: v for k, v in params.items() if v is not None or k == "weights"})

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with ``changes`` applied."""
        return type(self).from_params({**self.to_dict(), **changes})

    # --- use ----------------------------------------------------------------------------------
    def selection_hash(self) -> str:
        """Short hash of :meth:`selection_key`: runs with the same one compare their data (drift)."""
        return hashlib.sha256(json.dumps(self.selection_key(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values (lists for tuples, strings for enums): what runs.config stores."""
        dumped: dict[str, Any] = self.model_dump(mode="json")
        return dumped

    def loss_weight(self, target: str) -> float:
        return float(self.loss_weights.get(Target(target), 1.0))

    def selection_key(self) -> dict[str, Any]:
        """The fields a dataset version depends on (selection + split)."""
        d = self.to_dict()
        return {k: d[k] for k in self.SELECTION_FIELDS}

    def fingerprint(self) -> str:
        """Stable short hash of the whole config."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


#: The CPU-sized config of ``make demo``, the tests and the benchmarks, passed explicitly (never a
#: default): random init at 64 px, 3 epochs, every layer trained, the three-optimizer sweep, and a
#: data-quality gate loose enough for a few dozen generated paintings (a regenerated set may differ
#: entirely from the last one).
CPU_DEMO: dict[str, Any] = {
    "weights": None, "image_size": 64, "epochs": 3, "fine_tune": "all", "fine_tune_stages": 1, "head_epochs": 1,
    "gradient_accumulation_steps": 1,
    "optimizers": ["adam", "rmsprop", "sgd"], "max_reject_rate": 0.5, "warn_reject_rate": 0.2,
    "min_split_paintings": 1, "warn_split_paintings": 1, "max_drift": 100.0, "warn_drift": 100.0,
}

#: Named sets of run defaults one flag away: ``painting-ml run --preset cpu`` and the trigger form of
#: ``painting-ml airflow`` (written as its ``PAINTING_RUN_DEFAULTS`` file). ``cpu`` is :data:`CPU_DEMO`
#: with the demo's model (ResNet18 at learning rate 3e-4, ``painting_ml.cli.demo.DEMO_MODEL``): what
#: trains and passes the data-quality gate on a laptop with the generated demo set.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {**CPU_DEMO, "backbone": "resnet18", "learning_rate": 3e-4},
}


def read_defaults_file(path: str | Path, model: type[RunConfig] = RunConfig) -> dict[str, Any]:
    """A deployment's defaults file (``PAINTING_RUN_DEFAULTS``): a JSON or YAML mapping of config keys.

    Every key must be a config field and every value valid for it (checked together, like a run's
    config); the error names the file and the key. Returns the values as the schema normalised them
    (lists for comma-separated text, ``None`` for an empty ``weights``).

    Raises:
        ConfigError: unreadable file, not a mapping, unknown key or invalid value.
    """
    path = Path(path)
    where = f"PAINTING_RUN_DEFAULTS={path}"
    text = read_setting_file(path, "PAINTING_RUN_DEFAULTS", "a JSON or YAML file of run options")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            values = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc})") from None
    elif suffix in (".yaml", ".yml"):
        import yaml  # a dependency of Airflow; cheap

        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML ({' '.join(str(exc).split())})") from None
    else:
        raise ConfigError(f"{where}: name the file *.json, *.yaml or *.yml")
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: holds a {type(values).__name__}; write a mapping of config keys, "
                          "e.g. epochs: 40")
    try:
        cfg = model(**{"data_dir": "-", **values})
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    normalised = cfg.to_dict()
    return {str(k): normalised[k] for k in values}


# --- the schema, read by every edge -------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    # Building a model's JSON schema takes ~10 ms; the form, the CLI and the table ask per field.
    return model.model_json_schema()


def field_schema(model: type[BaseModel], name: str) -> dict[str, Any]:
    """One field's JSON schema with ``$ref`` enums inlined and ``X | None`` as ``type: [X, "null"]``
    (the form Airflow's Params and trigger form understand). Includes title, description, section."""
    full = _json_schema(model)
    defs = full.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = defs[node["$ref"].rsplit("/", 1)[-1]]
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return resolve({**{k: v for k, v in target.items() if k in ("enum", "type")}, **rest})
            if "anyOf" in node:
                options = [resolve(o) for o in node["anyOf"]]
                types = [o.get("type") for o in options]
                if len(options) == 2 and "null" in types:
                    base = next(o for o in options if o.get("type") != "null")
                    rest = {k: v for k, v in node.items() if k != "anyOf"}
                    return {**base, **rest, "type": [base["type"], "null"]}
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    schema: dict[str, Any] = resolve(copy.deepcopy(full["properties"][name]))
    schema.pop("default", None)
    info = model.model_fields[name]
    schema.update(title=info.title, description=info.description)  # pydantic drops them beside a $ref
    if schema.get("type") == "object" and "propertyNames" in schema:  # dict[Enum, float]
        names = schema.pop("propertyNames").get("enum", [])
        if names:
            schema["properties"] = {n: schema.get("additionalProperties", {}) for n in names}
            schema["additionalProperties"] = False
    return schema


def allowed(model: type[BaseModel], name: str) -> str:
    """What a field accepts, in words: 'one of a, b', 'an integer in [1, 5]', ..."""
    s = field_schema(model, name)
    return _describe(s)


def _describe(s: dict[str, Any]) -> str:
    kind = s.get("type")
    if "enum" in s:
        return "one of " + ", ".join(map(str, s["enum"]))
    if kind in ("integer", "number"):
        noun = "an integer" if kind == "integer" else "a number"
        lo = s.get("minimum", s.get("exclusiveMinimum"))
        hi = s.get("maximum", s.get("exclusiveMaximum"))
        if lo is None and hi is None:
            return noun
        left = "(" if "exclusiveMinimum" in s else "["
        right = ")" if "exclusiveMaximum" in s else "]"
        return f"{noun} in {left}{_num(lo)}, {_num(hi)}{right}"
    if kind == "array":
        items = s.get("items", {})
        if "enum" in items:
            return "a list of " + ", ".join(map(str, items["enum"]))
        if "pattern" in items:
            return "a list of " + ", ".join(FIXED) + " or rot<degrees>"
        return "a list of strings"
    if kind == "boolean":
        return "true or false"
    if kind == "object":
        return "an object of target -> weight in [0, 100]"
    if isinstance(kind, list):
        return "a string, or empty"
    if kind == "string":
        return "a non-empty string"
    return str(kind)


def _num(x: float | None) -> str:
    if x is None:
        return "..."
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def explain(exc: ValidationError, model: type[BaseModel]) -> str:
    """Pydantic's errors as one line: field, value and what is allowed, for every error."""
    fields = list(model.model_fields)
    parts: list[str] = []
    for err in exc.errors():
        loc = err.get("loc", ())
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:
            parts.append(msg)
            continue
        name = str(loc[0])
        if err["type"] == "extra_forbidden" and name in _DEPLOYMENT_KEYS:
            parts.append(f"{name} is not a run option but the deployment's environment variable {env_name(name)} "
                         f"(Airflow reads it when it parses the DAG file); set {env_name(name)}={err.get('input')} "
                         "and remove the key")
            continue
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parts.append(f"unknown config key {name!r}{hint}; known keys: {', '.join(fields)}")
            continue
        if err["type"] == "missing":
            parts.append(f"{name} is missing; it takes {allowed(model, name)}")
            continue
        where = name + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in loc[1:])
        value = err.get("input")
        msg = msg[0].lower() + msg[1:] if msg else msg
        parts.append(f"{where}={value!r}: {msg}; use {allowed(model, name)}")
    return "; ".join(parts)


def _extra(f: Any) -> dict[str, Any]:
    """A field's ``json_schema_extra`` mapping (this schema never uses the callable form)."""
    extra = f.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def sections(model: type[BaseModel] = RunConfig) -> dict[str, list[str]]:
    """Field names grouped by form section, in declaration order."""
    out: dict[str, list[str]] = {s.value: [] for s in Section}
    for name, f in model.model_fields.items():
        out.setdefault(str(_extra(f).get("section", Section.DATA.value)), []).append(name)
    return {k: v for k, v in out.items() if v}


def markdown_table(model: type[BaseModel] = RunConfig) -> str:
    """The README's configuration table: every field with its section, default, allowed values."""
    lines = ["| section | key | default | allowed | what it does |", "|---|---|---|---|---|"]
    for section, names in sections(model).items():
        for name in names:
            f = model.model_fields[name]
            doc = _extra(f).get("default_doc")
            default = doc if doc else "required" if f.is_required() else json.dumps(
                f.default.value if isinstance(f.default, StrEnum) else
                list(f.default) if isinstance(f.default, tuple) else f.default)
            desc = (f.description or "").replace("|", "\\|")
            what = allowed(model, name).replace("|", "\\|")
            lines.append(f"| {section} | `{name}` | `{default}` | {what} | {f.title}: {desc} |")
    return "\n".join(lines)
