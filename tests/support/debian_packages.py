"""Install Debian packages with apt-get, for the throwaway database servers of tests and benches.

Only as root and only where apt-get exists; callers turn a failure into their own
"unavailable" error. Waits for the dpkg lock (another process may be installing too) rather
than failing at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess

__all__ = ["AptInstallError", "apt_install", "can_install"]

DPKG_LOCK_TIMEOUT_SECONDS = 300


class AptInstallError(RuntimeError):
    """apt-get update or install exited non-zero; the message holds the end of its output."""


def can_install() -> bool:
    """True when we are root and apt-get is on PATH."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(*packages: str) -> None:
    """Run `apt-get update` and `apt-get install --no-install-recommends` for `packages`.

    Raises:
        AptInstallError: Either command failed.
    """
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = f"DPkg::Lock::Timeout={DPKG_LOCK_TIMEOUT_SECONDS}"
    for command in (
        ["apt-get", "-o", lock, "update", "-qq"],
        ["apt-get", "-o", lock, "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise AptInstallError(
                f"{' '.join(command)} failed ({result.returncode}): {result.stderr[-2000:]}"
            )
