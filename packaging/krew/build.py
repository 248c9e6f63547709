"""The krew archive of `kubectl cardpool` and its manifest:

    python packaging/krew/build.py --uri URL --homepage URL [--out dist/krew]

The archive (cardpool-linux-amd64.tar.gz) holds the launcher kubectl-cardpool and lib/: cardpool and its
dependencies at constraints.txt's versions, from the wheels image/install.py fetches for the operator image
(CPython 3.11, glibc Linux), unpacked by pip, so one recipe picks them. The manifest (cardpool.yaml) is
packaging/krew/cardpool.yaml with the version, the archive's URL (where you will publish it) and its sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARCHIVE = "cardpool-linux-amd64.tar.gz"


def lib(stage: Path, work: Path) -> None:
    wheels = work / "wheels"
    subprocess.run([sys.executable, str(REPO / "image" / "install.py"), "wheels", str(REPO), str(wheels)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-compile", "--no-deps",
                    "--disable-pip-version-check", "--target", str(stage / "lib"),
                    *(str(w) for w in sorted(wheels.glob("*.whl")) if not w.name.startswith("pip-"))], check=True)
    # as in the image: kubernetes' asyncio client is a second copy of the API that cardpool never imports
    shutil.rmtree(stage / "lib" / "kubernetes" / "aio", ignore_errors=True)
    shutil.rmtree(stage / "lib" / "bin", ignore_errors=True)  # console scripts with this machine's paths


def build(uri: str, homepage: str, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "stage"
        stage.mkdir()
        lib(stage, Path(tmp))
        shutil.copy2(HERE / "kubectl-cardpool", stage / "kubectl-cardpool")
        archive = out / ARCHIVE
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(stage.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(stage)), recursive=False)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    manifest = out / "cardpool.yaml"
    manifest.write_text(Template((HERE / "cardpool.yaml").read_text()).substitute(
        VERSION=version, HOMEPAGE=homepage, URI=uri, SHA256=sha256))
    return archive, manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, help=f"where {ARCHIVE} will be downloaded from")
    parser.add_argument("--homepage", required=True)
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "krew")
    args = parser.parse_args(argv)
    for path in build(args.uri, args.homepage, args.out):
        print(f"{path} {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
