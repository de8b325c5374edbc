"""Downloading a release of Fashion-MNIST, each file verified twice before it gets its name: pooch downloads it
(retrying) under a temporary name of this process's and checks its published .gz hash, then `verify` checks what it
decompresses to. Each download says so in a line on stderr, with a bar where a person watches (terminal, Jupyter)."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Sequence

from . import fashion_mnist
from .fashion_mnist import DEFAULT_RELEASE, ENV_VAR, NAMES, DataError, scan, verify


def mirrors(release: str) -> list:
    """Where `release` can be downloaded: Gluon's mirror serves only the first, Zalando's only the final."""
    if release != "first":
        return ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    repo = os.environ.get("MXNET_GLUON_REPO", "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/")
    if not repo.startswith(("http://", "https://")):  # honoured as Gluon does, which needs a URL too
        raise DataError(f"MXNET_GLUON_REPO must start with http:// or https://, got {repo!r}; set it to the "
                        f"mirror's URL, or unset it to use Gluon's own")
    return [repo.rstrip("/") + "/gluon/dataset/fashion-mnist/"]


def fetch_release(release: str, dest: Path, *, urls: Sequence[str] | None = None) -> None:
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
            fetch(name, dest, release, urls=urls)


def fetch(name: str, dest: Path, release: str = DEFAULT_RELEASE, *, urls: Sequence[str] | None = None,
          retries: int = 3) -> Path:
    """Download `name`.gz of `release` into `dest`, verified (its .gz hash, then its payload) before it gets its
    name: a failed check leaves nothing."""
    import pooch
    import requests

    dest = Path(dest)
    made = next((p for p in (*reversed(dest.parents), dest) if not p.exists()), None)  # by pooch, if it fails
    # A temporary name of this process's own: another one downloading into the same folder has its own.
    spec, part = fashion_mnist.FILES[release][name], dest / f".{name}.gz.{os.getpid()}.part"
    algorithm, known = ("md5", spec.gz_md5) if release == "final" else ("sha1", spec.gz_sha1)  # as published
    watched = sys.stderr.isatty() or "ipykernel" in sys.modules  # a person: a terminal, or Jupyter (no tty)
    logger = pooch.get_logger()  # its "Downloading..." and retry lines: a failure is ours to say, once
    level, errors = logger.level, []
    logger.setLevel("ERROR")
    try:
        for url in [base + name + ".gz" for base in (mirrors(release) if urls is None else urls)]:
            print(f"downloading {name}.gz of the {release} release from {url} into {dest}", file=sys.stderr, flush=True)
            fetcher = pooch.create(dest, url, registry={part.name: f"{algorithm}:{known}"}, urls={part.name: url},
                                   retry_if_failed=retries - 1)
            try:
                fetcher.fetch(part.name, downloader=pooch.HTTPDownloader(progressbar=watched, timeout=30))
                got = verify(part, name)[0]
                if got != release:
                    raise DataError(f"it is the {got} release's file, not the {release} release's")
                return part.replace(dest / (name + ".gz"))
            except DataError as e:
                errors.append(f"{url}: {str(e).replace(str(part), 'the downloaded file')}")
            except ValueError:  # pooch's check of the .gz hash
                errors.append(f"{url}: not the file published ({algorithm.upper()} differs), after {retries} tries")
            except requests.RequestException as e:
                errors.append(f"{url}: {_reason(e)}, after {retries} tries")
            except OSError as e:
                raise DataError(f"cannot write {dest} to download {name}: {_reason(e)}") from None
            finally:
                part.unlink(missing_ok=True)
    finally:
        logger.setLevel(level)
    if made is not None:  # a failed download leaves no folder behind (`data status` would call it empty)
        for folder in [dest, *dest.parents][:len(dest.parts) - len(made.parts) + 1]:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: another process may be downloading into it
    raise DataError(f"could not download the {release} release's {name} ({errors[-1] if errors else 'no mirror'})")


def _reason(e: BaseException) -> str:
    # requests and pooch wrap the system's error (say, "Connection refused") in their own, once or twice.
    while e.__cause__ or e.__context__:
        e = e.__cause__ or e.__context__
    return getattr(e, "strerror", None) or str(e)
