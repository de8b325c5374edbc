"""Downloading a release of Fashion-MNIST, each file verified before it gets its name."""
from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from .fashion_mnist import DEFAULT_RELEASE, ENV_VAR, NAMES, DataError, identify, scan
from .persist import atomic_write


def mirrors(release: str) -> list:
    """Where `release` can be downloaded: Gluon's mirror serves only the first, Zalando's only the final."""
    if release == "first":  # honours MXNET_GLUON_REPO, as Gluon does
        repo = os.environ.get("MXNET_GLUON_REPO", "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/")
        return [repo.rstrip("/") + "/gluon/dataset/fashion-mnist/"]
    return ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]


def fetch_release(release: str, dest: Path, *, urls: Sequence[str] | None = None, **kwargs) -> None:
    """Download into `dest` each file of `release` that is missing there or damaged, verified; never into a
    folder that holds another release's files (they would be replaced, or mixed with these)."""
    found = scan(dest)
    other = sorted({f.release for f in found.values()} - {release, None})
    if other:
        raise DataError(f"{dest} holds files of the {other[0]} release, which a download of the {release} release "
                        f"would replace or mix with other data; download it into a folder of its own "
                        f"(--data-dir or {ENV_VAR})")
    for name in NAMES:
        if found[name].release != release:
            fetch(name, dest, release, urls=urls, **kwargs)


def fetch(name: str, dest: Path, release: str = DEFAULT_RELEASE, *, urls: Sequence[str] | None = None,
          retries: int = 3, backoff: float = 1.0, timeout: float = 30.0) -> Path:
    """Download `name`.gz of `release` into `dest`, verified before it gets its final name."""
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {dest} to download {name}: {e.strerror}") from None
    final = dest / (name + ".gz")
    errors = []
    for attempt in range(retries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        for base in urls if urls is not None else mirrors(release):
            url = base + name + ".gz"
            try:
                return atomic_write(final, lambda tmp, url=url: _download(url, tmp, name, release, timeout))
            except (OSError, urllib.error.URLError, DataError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
    last = f"{errors[-1]}, after {retries} tries" if errors else "no mirror to download from"
    raise DataError(f"could not download the {release} release's {name} ({last})")


def _download(url: str, tmp: str, name: str, release: str, timeout: float) -> None:
    # Into a temp file that `atomic_write` renames only if this returns: a failed check leaves nothing.
    from tqdm import tqdm

    with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
        print(f"downloading {url}", file=sys.stderr)
        size = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=size, unit="B", unit_scale=True, leave=False, disable=not sys.stderr.isatty()) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    try:
        got = identify(tmp, name)[0]
    except DataError as e:
        raise DataError(str(e).replace(tmp, "the downloaded file")) from None
    if got != release:
        raise DataError(f"the downloaded file is the {got} release's, not the {release} release's")
