"""Where checkpoints and logs live: a local folder or an fsspec URL (s3://, gs://, memory://, ...).

Paths are universal_pathlib UPaths, so the same pathlib calls work on every backend. Only a local
filesystem renames a folder in one step and appends to a file; callers that rely on either ask `is_local`.
"""

from __future__ import annotations

import os
from typing import Annotated

import fsspec
from fsspec.implementations.local import LocalFileSystem
from pydantic import PlainValidator, PlainSerializer, WithJsonSchema
from upath import UPath

CLOUD_EXTRA = "pip install 'irpo[cloud]' installs s3fs and gcsfs"


def storage_path(value: str | os.PathLike) -> UPath:
    """A local path or fsspec URL as a UPath. A URL whose filesystem is unknown or whose package is not
    installed raises ValueError naming it, so a config stops before any work instead of at the first save."""
    try:
        path = value if isinstance(value, UPath) else UPath(value)
        fsspec.get_filesystem_class(path.protocol or "file")
    except ImportError as exc:  # fsspec's message names the package ("Install s3fs to access S3")
        raise ValueError(f"{value}: {exc} ({CLOUD_EXTRA})") from None
    except ValueError as exc:  # "Unsupported filesystem: 'foo'"
        raise ValueError(f"{value}: {exc}") from None
    return path


def is_local(path: UPath) -> bool:
    """A local filesystem: os.replace renames a folder atomically and files append; object stores
    (and fsspec's memory filesystem, their stand-in in tests) copy and delete object by object."""
    return isinstance(path.fs, LocalFileSystem)


def remove_tree(path: UPath, first: str | None = None) -> None:
    """Delete a folder if present; `first` (a file in it) goes before the rest, so a delete cut short on an
    object store leaves a folder without that file (a checkpoint without its commit marker), never one with it."""
    if first is not None and (path / first).exists():
        (path / first).unlink()
    if path.exists():
        path.fs.rm(path.path, recursive=True)


# A config field holding a local path or URL: validated as above, written back as the string it was given.
StoragePath = Annotated[
    UPath,
    PlainValidator(storage_path),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "description": "local path or fsspec URL"}),
]
