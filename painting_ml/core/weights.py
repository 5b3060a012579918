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


#: How a weights file Keras can load begins: HDF5 (``.h5``, ``.weights.h5``) or a zip (``.keras``).
_SIGNATURES = (b"\x89HDF\r\n\x1a\n", b"PK\x03\x04")


def check_weights(weights: str | None, backbone: str = "resnet50") -> None:
    """Raise a one-line :class:`ConfigError` (under 300 characters plus the path) when ``weights``
    names no usable file: missing, a folder, unreadable, or not a Keras weights file. Whether the
    file fits the backbone is :func:`painting_ml.pipeline.check_config_step`'s check (it builds
    the backbone, which needs Keras).

    Args:
        weights: a file path, ``"imagenet"`` or ``None``.
        backbone: the run's backbone (names the file to fetch in the message).
    """
    if weights in (None, "imagenet"):
        return
    path = Path(weights)
    fix = "set PAINTING_WEIGHTS (or the run's weights field) to the file"
    if path.is_dir():
        raise ConfigError(f"weights file {weights} is a directory, not a file: {fix} in it "
                          f"({notop_file_name(backbone) if backbone != 'resnet18' else 'the resnet18 no-top file'})")
    if not path.is_file():
        source = (RESNET50_NOTOP_URL.replace("resnet50", backbone) if backbone != "resnet18"
                  else "a resnet18 trained elsewhere and saved without its top")
        raise ConfigError(f"weights file {weights} not found: put {backbone}'s no-top weights there ({source}) "
                          f"or {fix}; imagenet downloads them, none trains from scratch")
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ConfigError(f"weights file {weights} cannot be read ({exc.strerror or type(exc).__name__}): fix its "
                          "permissions or " + fix) from None
    if not head.startswith(_SIGNATURES):
        raise ConfigError(f"weights file {weights} is not a Keras weights file (HDF5 .h5 / .weights.h5, or .keras): "
                          f"{fix} as Keras saved it")
