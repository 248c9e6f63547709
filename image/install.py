"""The operator image's recipe, shared by every way of building it (the Containerfile's steps, `make image`).

    python3 image/install.py wheels SRC OUT   # the pinned wheels of cardpool and its dependencies (network)
    python3 image/install.py install WHEELS   # inside the image's root: venv and user (no network)

`wheels` fetches for the image's interpreter (CPython 3.11 on glibc 2.36, bookworm's), not the one running
it, so any host can prepare them. `install` needs only Python 3.11 in the root: it runs pip from its wheel,
so neither pip nor a shell is left in the image. Standard library only.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import venv
from pathlib import Path

PREFIX = Path("/opt/cardpool")
UID = GID = 65532  # the Deployment's runAsUser/runAsGroup
USER = "cardpool"
PYTHON = "3.11"  # bookworm's python3
GLIBC_MINOR = 36  # bookworm's glibc 2.36: manylinux wheels up to manylinux_2_36 run on it


def wheels(src: Path, out: Path) -> None:
    """Build cardpool's wheel and download its dependencies' wheels, at constraints.txt's versions, into OUT,
    with constraints.txt beside them for `install`."""
    out.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--no-input", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", str(out), str(src)], check=True)
    wheel = next(out.glob("cardpool-*.whl"))
    arch = platform.machine()
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(5, GLIBC_MINOR + 1)]
    platforms += [f"manylinux1_{arch}", f"manylinux2010_{arch}", f"manylinux2014_{arch}"]
    subprocess.run([*pip, "download", "-q", "--only-binary=:all:", "--python-version", PYTHON,
                    "--implementation", "cp", "--abi", "cp" + PYTHON.replace(".", ""),
                    *(f"--platform={p}" for p in platforms), "-c", str(src / "constraints.txt"), "-d", str(out),
                    str(wheel), "pip"], check=True)
    shutil.copy(src / "constraints.txt", out / "constraints.txt")


def install(wheelhouse: Path) -> None:
    """Install cardpool from WHEELS into a venv at /opt/cardpool and add its user."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" != PYTHON:
        sys.exit(f"the image's Python is {sys.version.split()[0]}; the wheels are for {PYTHON}")
    venv.EnvBuilder(with_pip=False).create(PREFIX)
    pip = next(wheelhouse.glob("pip-*.whl"))  # a wheel runs as a zip application: pip without installing it
    # No byte code: it would add ~40 MB, and compiling what the operator imports at start costs ~1 s (measured:
    # 1.3-1.5 s against 0.5 s to import cardpool.handlers), once per start; the read-only root keeps none.
    subprocess.run([str(PREFIX / "bin" / "python"), str(pip / "pip"), "install", "-q", "--no-index", "--no-cache-dir",
                    "--no-compile", "--disable-pip-version-check", "--find-links", str(wheelhouse),
                    "-c", str(wheelhouse / "constraints.txt"), "cardpool"], check=True)
    site = PREFIX / "lib" / f"python{PYTHON}" / "site-packages"
    # kubernetes' asyncio client, a second copy of the whole API (68 MB of 276): neither cardpool nor kopf
    # imports it, and the e2e that runs the image would show it if one did
    shutil.rmtree(site / "kubernetes" / "aio", ignore_errors=True)
    add_user()


def add_user() -> None:
    """An entry for the Deployment's uid/gid (a root made from .debs may have no /etc/passwd at all)."""
    for path, root, line in (
            (Path("/etc/passwd"), "root:x:0:0:root:/root:/usr/sbin/nologin\n",
             f"{USER}:x:{UID}:{GID}::/nonexistent:/usr/sbin/nologin\n"),
            (Path("/etc/group"), "root:x:0:\n", f"{USER}:x:{GID}:\n")):
        existing = path.read_text() if path.exists() else root
        if f":x:{UID}:" not in existing:
            path.write_text(existing + line)
            os.chmod(path, 0o644)


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["wheels", src, out]:
            wheels(Path(src).resolve(), Path(out).resolve())
        case ["install", wheelhouse]:
            install(Path(wheelhouse))
        case _:
            sys.exit(__doc__)
