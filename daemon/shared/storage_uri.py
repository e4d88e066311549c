"""One place that knows how a lake URI is reached: a local path, `file://`, or an object store (`s3://`).

Every table, quarantine table, prediction/feedback log and the shared model store live under
`storage.root` (or `storage.models_uri`), which may be a local directory or an S3-compatible bucket.
Code that lists, tests, reads or deletes files there (not through deltalake) must not use `os.path` or
`pathlib` on a URI: it asks this module, which answers for both kinds through pyarrow's filesystems
(pyarrow is already a dependency; its S3 client is the same AWS SDK every S3-compatible store speaks).

The object-store options are delta-rs's `storage_options` keys (`AWS_ENDPOINT_URL`, `AWS_REGION`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`, ...), case-insensitive,
with or without the `AWS_` prefix, as delta-rs reads them. Credentials are `${secret:NAME}` references
in the specs; `resolve_options` turns them into values at apply time only (and registers them with the
log scrubber), so plans, errors and fingerprints only ever carry the references. `arrow_s3_kwargs` is
the single mapping from those keys to pyarrow's S3 client: TLS settings (a CA bundle) belong there too.

Safe concurrent commits on S3 come from conditional writes (`If-None-Match: *`, delta-rs's default since
0.23); `unsafe_commit_mode` names options that turn that off (an unsafe rename, conditional put disabled)
or select a locking provider delta-rs 1.x no longer has, which `validate` refuses unless the environment
declares a single writer.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

# Options that carry a credential: only ever `${secret:NAME}` references in the specs.
CREDENTIAL_OPTIONS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri.removeprefix("file://")


def join(base: str, *parts: str) -> str:
    """`base/part/...` for a local path or a URI alike (never os.path.join on a URI)."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def _key(name: str) -> str:
    upper = name.upper()
    return upper[4:] if upper.startswith("AWS_") else upper


def option(options: Mapping[str, str] | None, *names: str) -> str | None:
    """The value of a storage option by its delta-rs name, whatever its case or `AWS_` prefix."""
    wanted = {_key(n) for n in names}
    for key, value in (options or {}).items():
        if _key(key) in wanted:
            return value
    return None


def _truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def resolve_options(options: Mapping[str, str] | None) -> dict[str, str] | None:
    """Secret references resolved (apply time only); None when there are no options."""
    if not options:
        return None
    from daemon.shared.secrets import is_secret_ref, resolve_secret

    return {k: resolve_secret(v) if is_secret_ref(v) else v for k, v in options.items()}


def client_options(options: Mapping[str, str] | None, tls_section: Any = None, home: Any = None) -> dict[str, str] | None:
    """The one way from `storage.storage_options` (secret references) to what a client is given: secrets
    resolved, the environment's `tls.ca` added for an https:// endpoint (`certificate_path`, which
    `arrow_s3_kwargs` maps too), and `tls.required` refusing a plaintext endpoint (ValueError). Every
    caller that opens a table, log or object on the lake — the daemon's adapters, the CLI, the services,
    scheduled runs — goes through here; None when there are no options (a local lake)."""
    resolved = resolve_options(options)
    if resolved is None:
        return None
    from daemon.shared import tls

    return tls.object_store_options(resolved, tls_section, home)


def log_options(settings: Mapping[str, Any], home: Any = None) -> dict[str, str] | None:
    """Client options of a service's prediction/feedback logs, from its routing file's `prediction_log`
    settings (`storage_options` and `tls`, references kept there): the service, `specd ab`, `specd erase`
    and the online-promotion ticker all read the logs through this."""
    return client_options(settings.get("storage_options"), settings.get("tls"), home)


def unsafe_commit_mode(root: str, options: Mapping[str, str] | None) -> str | None:
    """Why the options make concurrent commits under an object-store root unsafe, or None."""
    if is_local(root):
        return None
    if _truthy(option(options, "AWS_S3_ALLOW_UNSAFE_RENAME")):
        return "AWS_S3_ALLOW_UNSAFE_RENAME=true commits by an unconditional rename: two writers can overwrite each other's version"
    conditional = option(options, "AWS_CONDITIONAL_PUT", "conditional_put")
    if conditional is not None and conditional.strip().lower() in ("disabled", "none", "false", "off"):
        return f"conditional put disabled ({conditional!r}): two writers can overwrite each other's version"
    locking = option(options, "AWS_S3_LOCKING_PROVIDER")
    if locking is not None and locking.strip():
        return (f"AWS_S3_LOCKING_PROVIDER={locking!r}: delta-rs 1.x has no DynamoDB locking; it commits with S3 "
                "conditional writes, which the store must honour (remove the option)")
    return None


def arrow_s3_kwargs(options: Mapping[str, str] | None) -> dict[str, Any]:
    """pyarrow `S3FileSystem` arguments from delta-rs storage options (resolved values)."""
    kwargs: dict[str, Any] = {}
    if (value := option(options, "AWS_ACCESS_KEY_ID", "access_key_id")) is not None:
        kwargs["access_key"] = value
    if (value := option(options, "AWS_SECRET_ACCESS_KEY", "secret_access_key")) is not None:
        kwargs["secret_key"] = value
    if (value := option(options, "AWS_SESSION_TOKEN", "session_token", "AWS_TOKEN", "token")) is not None:
        kwargs["session_token"] = value
    if (value := option(options, "AWS_REGION", "AWS_DEFAULT_REGION", "region")) is not None:
        kwargs["region"] = value
    endpoint = option(options, "AWS_ENDPOINT_URL", "AWS_ENDPOINT", "endpoint_url", "endpoint")
    if endpoint:
        scheme, _, rest = endpoint.partition("://")
        if rest:
            kwargs["scheme"] = scheme
            kwargs["endpoint_override"] = rest.rstrip("/")
        else:
            kwargs["endpoint_override"] = endpoint.rstrip("/")
            kwargs["scheme"] = "http" if _truthy(option(options, "AWS_ALLOW_HTTP", "allow_http")) else "https"
        # S3-compatible stores behind an endpoint take path-style requests (bucket in the path)
        kwargs["force_virtual_addressing"] = _truthy(option(options, "AWS_VIRTUAL_HOSTED_STYLE_REQUEST"))
    # the CA bundle delta-rs trusts (`certificate_path`, set from `tls.ca` by client_options): the same for
    # pyarrow's client, which otherwise verifies against the system roots only
    if (value := option(options, "certificate_path", "AWS_CA_BUNDLE")) is not None:
        kwargs["tls_ca_file_path"] = value
    return kwargs


def filesystem(uri: str, options: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """(pyarrow FileSystem, path inside it) for a local path or an object-store URI."""
    import pyarrow.fs as pafs

    if is_local(uri):
        return pafs.LocalFileSystem(), local_path(uri)
    scheme, _, rest = uri.partition("://")
    if scheme in ("s3", "s3a"):
        return _s3(tuple(sorted(arrow_s3_kwargs(options).items()))), rest.rstrip("/")
    return pafs.FileSystem.from_uri(uri)


@functools.lru_cache(maxsize=16)
def _s3(kwargs: tuple[tuple[str, Any], ...]) -> Any:
    """One S3 client per distinct configuration and process: observe opens every table's log, and a
    client's setup (credential chain, region, connection pool) costs more than the requests themselves."""
    import pyarrow.fs as pafs

    return pafs.S3FileSystem(**dict(kwargs))


def exists(uri: str, options: Mapping[str, str] | None = None) -> bool:
    if is_local(uri):
        return os.path.exists(local_path(uri))
    import pyarrow.fs as pafs

    fs, path = filesystem(uri, options)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.NotFound:
        return True
    # an object-store "directory" exists when anything lies under it
    return bool(fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True)))


def list_dirs(uri: str, options: Mapping[str, str] | None = None) -> list[str]:
    """Names of the directories (prefixes) directly under `uri`; [] when it does not exist."""
    if is_local(uri):
        try:
            with os.scandir(local_path(uri)) as entries:
                return sorted(e.name for e in entries if e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []
    import pyarrow.fs as pafs

    fs, path = filesystem(uri, options)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def list_files(uri: str, options: Mapping[str, str] | None = None, *, recursive: bool = False) -> dict[str, int]:
    """{path relative to `uri`: size} of the files under it ({} when it does not exist)."""
    return {name: size for name, (size, _) in list_entries(uri, options, recursive=recursive).items()}


def list_entries(uri: str, options: Mapping[str, str] | None = None, *, recursive: bool = False) -> dict[str, tuple[int, int]]:
    """{path relative to `uri`: (size, mtime in ns)} of the files under it ({} when it does not exist)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri, options)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    base = path.rstrip("/") + "/"
    return {i.path[len(base):] if i.path.startswith(base) else i.base_name: (i.size or 0, i.mtime_ns or 0)
            for i in infos if i.type == pafs.FileType.File}


def read_bytes(uri: str, options: Mapping[str, str] | None = None) -> bytes:
    """The whole object or file; FileNotFoundError when absent."""
    if is_local(uri):
        with open(local_path(uri), "rb") as handle:
            return handle.read()
    fs, path = filesystem(uri, options)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(uri: str, data: bytes, options: Mapping[str, str] | None = None) -> None:
    """Write a whole object (an S3 PUT is atomic: readers see the old or the new object, never a torn one).
    Local files go through a temp file and a rename for the same guarantee."""
    if is_local(uri):
        from daemon.shared.fsio import atomic_write_bytes

        atomic_write_bytes(local_path(uri), data)
        return
    fs, path = filesystem(uri, options)
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def upload(local: str | os.PathLike, uri: str, options: Mapping[str, str] | None = None) -> None:
    """Copy a local file to `uri` (streamed; multipart on S3)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri, options)
    if is_local(uri):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    pafs.copy_files(os.fspath(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def download(uri: str, local: str | os.PathLike, options: Mapping[str, str] | None = None) -> None:
    """Copy `uri` to a local file (FileNotFoundError when absent)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri, options)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise FileNotFoundError(uri)
    pafs.copy_files(path, os.fspath(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())


def delete_tree(uri: str, options: Mapping[str, str] | None = None) -> None:
    """Remove a directory (prefix) and everything under it; nothing when absent."""
    if is_local(uri):
        import shutil

        shutil.rmtree(local_path(uri), ignore_errors=True)
        return
    import pyarrow.fs as pafs

    fs, path = filesystem(uri, options)
    if fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True)):
        fs.delete_dir(path)
