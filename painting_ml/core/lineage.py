"""What code produced a run: the package version and the git commit (or the image digest).

A container built from ``docker/Dockerfile`` has no ``.git``; its build passes the commit in
``PAINTING_CODE_COMMIT`` (or the registry digest in ``PAINTING_IMAGE_DIGEST``), which win over git.
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata

from painting_ml.core.settings import PROJECT_ROOT, get_settings


@functools.lru_cache(maxsize=1)
def code_version() -> tuple[str, str | None]:
    """(package version, commit) — the commit ends in ``+dirty`` when the work tree had
    uncommitted changes; None when neither git nor the build told us."""
    try:
        version = metadata.version("painting-ml")
    except metadata.PackageNotFoundError:
        version = "unknown"
    settings = get_settings()
    commit = settings.image_digest or settings.code_commit or _git_commit()
    return version, commit


def _git_commit() -> str | None:
    if not (PROJECT_ROOT / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head
