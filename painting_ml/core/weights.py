"""Where a run's backbone weights come from, checked before anything slow starts.

A run's ``weights`` is a local file (the deployment's ``PAINTING_WEIGHTS``, by default the Keras
ImageNet ResNet50 no-top file on the weights volume), ``imagenet`` (Keras downloads it) or ``None``
(random init, the CPU demo). A missing file is a one-line :class:`ConfigError` saying where to put
it — never a silent fall-back to random weights. No Keras here: the check takes microseconds, so
the DAG's first task and the CLI run it before any data or model work.
"""

from __future__ import annotations

from pathlib import Path

from painting_ml.core.errors import ConfigError
from painting_ml.core.settings import RESNET50_NOTOP_FILE, RESNET50_NOTOP_URL


def notop_file_name(backbone: str) -> str:
    """The file name Keras gives ``backbone``'s ImageNet weights without the top."""
    return RESNET50_NOTOP_FILE.replace("resnet50", backbone)


def check_weights(weights: str | None, backbone: str = "resnet50") -> None:
    """Raise a one-line :class:`ConfigError` when ``weights`` names a file that is not there.

    Args:
        weights: a file path, ``"imagenet"`` or ``None``.
        backbone: the run's backbone (names the file to fetch in the message).
    """
    if weights in (None, "imagenet") or Path(weights).is_file():
        return
    source = (RESNET50_NOTOP_URL.replace("resnet50", backbone) if backbone != "resnet18"
              else "a resnet18 trained elsewhere and saved without its top")
    raise ConfigError(
        f"weights file {weights} not found: put the {backbone} weights without the top there "
        f"({Path(weights).name if backbone == 'resnet18' else notop_file_name(backbone)}, from {source}), "
        "or point PAINTING_WEIGHTS (or the run's weights field) at the file; weights=imagenet downloads them, "
        "weights=none trains from random init")
