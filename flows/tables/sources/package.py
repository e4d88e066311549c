"""Package sources: a data file shipped inside an installed Python package (a real dataset, no download).

Read through importlib.resources so it works for any installed layout; the path is checked to stay
inside the package. The input digest is the package version plus the file's size, so upgrading the
package marks the table stale.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.tables.sources import SourceContext, SourceError
from flows.tables.sources.files import read_paths

if TYPE_CHECKING:
    import pyarrow as pa


def package_file(spec: Any, ctx: SourceContext) -> Path:
    if importlib.util.find_spec(spec.package.split(".")[0]) is None:
        raise SourceError(f"table {ctx.table}: source.package {spec.package!r} is not installed")
    root = importlib.resources.files(spec.package)
    target = root.joinpath(*spec.path.split("/"))
    with importlib.resources.as_file(root) as root_path, importlib.resources.as_file(target) as target_path:
        root_real, target_real = Path(root_path).resolve(), Path(target_path).resolve()
        if not target_real.is_relative_to(root_real):
            raise SourceError(f"table {ctx.table}: source.path {spec.path!r} escapes package {spec.package}")
        if not target_real.is_file():
            raise SourceError(f"table {ctx.table}: source.path {spec.path!r} not found in package {spec.package}")
        return target_real


def _version(package: str) -> str:
    try:
        return metadata.version(package.split(".")[0])
    except metadata.PackageNotFoundError:
        return "unknown"


def input_digest(spec: Any, ctx: SourceContext) -> str | None:
    try:
        path = package_file(spec, ctx)
    except SourceError:
        return "missing"
    material = f"{spec.package}\0{_version(spec.package)}\0{spec.path}\0{path.stat().st_size}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def read(spec: Any, ctx: SourceContext) -> pa.RecordBatchReader:
    return read_paths([package_file(spec, ctx)], spec.format, spec.options, spec.row_id, ctx)
