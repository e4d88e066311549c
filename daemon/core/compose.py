"""Compose: a checkout directory + an environment name → validated, immutable spec documents.

Why not one Hydra `compose()` over everything: it costs 60–90 ms per call and grows faster than linear
with the number of files. We keep Hydra's language instead — defaults lists with `_self_`, shared
presets, `${...}` interpolation, `${oc.env:VAR,default}`, and `key=value` overrides parsed by Hydra's own
override grammar — and load file by file: a plain file (no `${`, no defaults) is one C YAML parse and one
pydantic validation. Line maps are built only when a file has errors.

Every problem of the revision is collected and raised together as `SpecErrors`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from daemon.core import interp_guard
from daemon.core.compose_cache import ComposeCache, Dependencies, cache_key, cache_key_of, digest_text
from daemon.core.documents import Composed, SpecDoc
from daemon.core.kinds import KINDS, Kind, load_object
from daemon.core.presets import merge_layers, resolve
from daemon.core.safeyaml import load_data, read_text
from daemon.core.spec_help import pydantic_issues, raw_references
from daemon.core.statindex import StatIndex
from daemon.core.tls_guard import plaintext_issues
from daemon.core.treeguard import skipped, tree_issues
from daemon.core.yamlpos import YamlSyntaxError, line_for, parse_with_lines
from daemon.schema.base import NAME_PATTERN
from daemon.schema.environment import EnvironmentSpec
from daemon.schema.overrides import parse_overrides
from daemon.shared.errors import SpecErrors, SpecIssue
from daemon.shared.secrets import find_credential_literals

SPECS_DIR = "specs"
ENVIRONMENTS_DIR = "environments"
PLAIN_MERGE = True  # False: every defaults list and interpolation through OmegaConf (tests compare both)


_resolvers_registered = False


def _register_resolvers() -> None:
    global _resolvers_registered
    if _resolvers_registered:
        return
    from omegaconf import OmegaConf

    from daemon.shared.secrets import guarded_env, secret_marker

    OmegaConf.register_new_resolver("secret", secret_marker, replace=True)
    OmegaConf.register_new_resolver("oc.env", guarded_env, replace=True)
    for name in interp_guard.REFUSED_RESOLVERS:  # decode/select arbitrary text: not part of the spec language
        OmegaConf.register_new_resolver(name, interp_guard.refuse(name), replace=True)
    _resolvers_registered = True


class _FileLoader:
    """Reads spec files and presets relative to one root; caches parsed presets for the run."""

    def __init__(self, root: Path):
        self.root = root
        self._raw: dict[Path, tuple[str, Any]] = {}
        self._texts: dict[Path, str] = {}  # read (for a cache key) but not parsed yet
        self._digests: dict[str, str | None] = {}
        self._rels: dict[Path, str] = {}
        self._presets: dict[tuple[Path, str], tuple[Path, bool, bool]] = {}
        self.stats: StatIndex | None = None  # the disk cache's: files known unchanged by their stat
        self._shas: dict[Path, str] = {}  # sha1 of texts read with a stat index

    def read(self, path: Path) -> tuple[str, Any]:
        """(text, data) of one file, parsed under the limits of `safeyaml`. Raises YamlSyntaxError
        carrying the file's repo-relative path."""
        if path not in self._raw:
            try:
                text = self.text(path)
                data = load_data(text)  # positions only when an error is reported (`_line`)
            except YamlSyntaxError as exc:
                exc.path = exc.path or self.rel(path)
                raise
            self._raw[path] = (text, data if data is not None else {})
            self._texts.pop(path, None)
        return self._raw[path]

    def text(self, path: Path) -> str:
        """A file's text, read once per run (a cache miss parses what was read for its key)."""
        if path in self._raw:
            return self._raw[path][0]
        if path not in self._texts:
            name = os.fspath(path)
            if self.stats is None or not os.path.isabs(name):
                self._texts[path] = read_text(path)
            else:  # remembered by its stat for the next run (presets, the files of a miss)
                before = self.stats.stat_before_read(name)
                self._texts[path] = read_text(path)
                self._shas[path] = digest_text(self._texts[path])
                self.stats.record(name, before, self._shas[path])
        return self._texts[path]

    def sha(self, path: Path) -> str:
        """sha1 of a file's text (its cache key), without reading it where the stat index knows it
        unchanged (daemon/core/statindex.py). Raises YamlSyntaxError as `text` does."""
        if path in self._shas:
            return self._shas[path]
        name = os.fspath(path)
        if self.stats is None or path in self._raw or path in self._texts or not os.path.isabs(name):
            return digest_text(self.text(path))
        known = self.stats.sha(name)
        if known is None:
            self.text(path)  # reads, hashes and records it
            known = self._shas[path]
        return known

    def preset(self, group_root: Path, entry: str) -> tuple[Path, bool, bool]:
        """(file, escapes group_root, is a file) of one `defaults:` entry, once per run."""
        key = (group_root, entry)
        if key not in self._presets:
            target = (group_root / entry.lstrip("/")).with_suffix(".yaml")
            escapes = not target.resolve().is_relative_to(group_root.resolve())
            self._presets[key] = (target, escapes, not escapes and target.is_file())
        return self._presets[key]

    def digest(self, rel: str) -> str | None:
        """sha1 of a file's text (None if unreadable or over the limits), once per run: compose-cache dependency checks."""
        if rel not in self._digests:
            try:
                self._digests[rel] = self.sha(self.root / rel) if self.stats is not None else digest_text(read_text(self.root / rel))
            except (OSError, YamlSyntaxError):
                self._digests[rel] = None
        return self._digests[rel]

    def dependencies(self, files: list[Path], own: Path, env_digest: str) -> Dependencies | None:
        return Dependencies.of([(self.rel(p), self.read(p)[0]) for p in files], env_digest, self.rel(own))

    def rel(self, path: Path) -> str:
        if path not in self._rels:
            try:
                self._rels[path] = path.relative_to(self.root).as_posix()
            except ValueError:
                self._rels[path] = path.as_posix()
        return self._rels[path]


def _defaults_chain(
    loader: _FileLoader, path: Path, group_root: Path, seen: tuple[Path, ...] = ()
) -> list[tuple[Path, dict]]:
    """Expand a file's `defaults:` list into ordered (file, data-without-defaults) layers."""
    rel = loader.rel(path)
    if path in seen:
        chain = " -> ".join(loader.rel(p) for p in seen + (path,))
        raise SpecErrors([SpecIssue(rel, 0, "defaults", f"defaults cycle: {chain}")])
    _, data = loader.read(path)
    if not isinstance(data, dict):
        raise SpecErrors([SpecIssue(rel, 1, "", "a spec file must be a mapping")])
    defaults = data.get("defaults", [])
    own = {k: v for k, v in data.items() if k != "defaults"}
    if not isinstance(defaults, list):
        raise SpecErrors([SpecIssue(rel, _line(path, ("defaults",)), "defaults", "must be a list")])
    layers: list[tuple[Path, dict]] = []
    self_added = False
    for index, entry in enumerate(defaults):
        if entry == "_self_":
            layers.append((path, own))
            self_added = True
            continue
        if not isinstance(entry, str):
            raise SpecErrors(
                [SpecIssue(rel, _line(path, ("defaults", index)), f"defaults[{index}]", "must be a preset path string")]
            )
        target, escapes, is_file = loader.preset(group_root, entry)
        if escapes:
            raise SpecErrors(
                [SpecIssue(rel, _line(path, ("defaults", index)), f"defaults[{index}]", f"{entry!r} escapes {loader.rel(group_root)}/")]
            )
        if not is_file:
            raise SpecErrors(
                [SpecIssue(rel, _line(path, ("defaults", index)), f"defaults[{index}]", f"preset {loader.rel(target)} not found")]
            )
        layers.extend(_defaults_chain(loader, target, group_root, seen + (path,)))
    if not self_added:
        layers.append((path, own))  # Hydra ≥ 1.1: _self_ last unless placed explicitly
    return layers


def _line(path: Path, key_path: tuple) -> int:
    try:
        _, lines = parse_with_lines(read_text(path))
    except (OSError, YamlSyntaxError):
        return 0
    return line_for(lines, key_path)


def _needs_omegaconf(text: str, data: dict) -> bool:
    return "${" in text or "defaults" in data


def _materialise(
    loader: _FileLoader, path: Path, group_root: Path, env_data: dict | None, overrides: list[tuple[str, Any]]
) -> tuple[dict, list[Path]]:
    """Merge defaults layers, apply overrides, resolve interpolations. Returns (data, source files)."""
    text, data = loader.read(path)
    if isinstance(data, dict) and not overrides and not _needs_omegaconf(text, data):
        return data, [path]
    layers = _defaults_chain(loader, path, group_root)
    if not overrides and env_data is not None:
        plain = _plain_materialise([layer for _, layer in layers], env_data)
        if plain is not None:
            return plain, [p for p, _ in layers]
    _register_resolvers()
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    merged = OmegaConf.merge(*[OmegaConf.create(layer) for _, layer in layers]) if layers else OmegaConf.create({})
    for key, value in overrides:
        OmegaConf.update(merged, key, value, merge=True, force_add=True)
    if env_data is None:  # the environment resolves against itself
        target = merged
    else:  # specs see the environment as ${env.*}
        root = OmegaConf.create({"env": env_data})
        root["spec"] = merged
        target = root["spec"]
    files = [p for p, _ in layers]
    try:  # size every ${...} reference before OmegaConf copies what it points to
        unresolved = OmegaConf.to_container(target, resolve=False)
        interp_guard.check({"env": env_data, "spec": unresolved} if env_data is not None else unresolved,
                           ("spec",) if env_data is not None else ())
    except interp_guard.InterpolationBomb as exc:
        where, line = _locate(files, exc.key, loader)
        raise SpecErrors([SpecIssue(where, line, ".".join(map(str, exc.key)), str(exc))]) from None
    try:
        resolved = OmegaConf.to_container(target, resolve=True)
    except OmegaConfBaseException as exc:
        key = str(getattr(exc, "full_key", "") or "").removeprefix("spec.")
        key_path = tuple(key.split(".")) if key else ()
        message = (getattr(exc, "msg", None) or str(exc)).splitlines()[0]
        where, line = _locate(files, key_path, loader)
        raise SpecErrors([SpecIssue(where, line, key, f"interpolation: {message}")]) from None
    return resolved, files


def _plain_materialise(layers: list[dict], env_data: dict) -> dict | None:
    """The common case without OmegaConf (same result, see daemon/core/presets.py); None: use OmegaConf."""
    if not PLAIN_MERGE:
        return None
    merged = merge_layers(layers)
    return resolve(merged, env_data) if merged is not None else None


def _locate(files: list[Path], key_path: tuple, loader: _FileLoader) -> tuple[str, int]:
    """The file (last layer first) that sets `key_path`, with its line; else the spec file's best line."""
    for candidate in reversed(files):
        try:
            _, lines = parse_with_lines(read_text(candidate))
        except (OSError, YamlSyntaxError):
            continue
        if key_path in lines:
            return loader.rel(candidate), lines[key_path]
    return loader.rel(files[-1]), _line(files[-1], key_path)


def _data_path(loc: tuple, data: Any) -> tuple:
    """pydantic's error location minus its own markers (union tags like "file", "function-after[...]"):
    keep the parts that really index into the data, plus a trailing missing key."""
    path: list[Any] = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif index == len(loc) - 1 and isinstance(part, str) and "[" not in part:
            path.append(part)  # a missing required field
    return tuple(path)


def _pydantic_issues(exc: ValidationError, files: list[Path], loader: _FileLoader, data: Any = None,
                     model: Any = None) -> list[SpecIssue]:
    """Schema errors with their file:line, a "did you mean" for misspelt keys and the wrong value echoed
    (see spec_help)."""
    def where(loc: tuple) -> tuple[tuple, str, int, str]:
        key_path = _data_path(loc, data) if data is not None else tuple(p for p in loc if isinstance(p, int) or "[" not in str(p))
        path, line = _locate(files, key_path, loader)
        try:
            text = loader.text(loader.root / path)
        except (OSError, YamlSyntaxError):
            text = ""
        return key_path, path, line, text

    return pydantic_issues(exc, where, model)


def _yaml_issues(exc: YamlSyntaxError, rel: str) -> list[SpecIssue]:
    return [SpecIssue(exc.path or rel, line, field, message) for line, field, message in exc.problems]


def load_environment(root: Path, env_name: str, overrides: Sequence[str] = ()) -> EnvironmentSpec:
    env_dir = root / ENVIRONMENTS_DIR
    path = env_dir / f"{env_name}.yaml"
    loader = _FileLoader(root)
    if not path.is_file():
        available = sorted(p.stem for p in env_dir.glob("*.yaml")) if env_dir.is_dir() else []
        raise SpecErrors([SpecIssue(loader.rel(path), 0, "", f"environment {env_name!r} not found (have: {', '.join(available) or 'none'})")])
    env_overrides = [(k.removeprefix("env."), v) for k, v in parse_overrides(overrides) if k.startswith("env.")]
    try:
        data, files = _materialise(loader, path, env_dir, None, env_overrides)
    except YamlSyntaxError as exc:
        raise SpecErrors(_yaml_issues(exc, loader.rel(path))) from None
    credential_issues = [
        SpecIssue(loader.rel(layer), _line(layer, key_path), ".".join(map(str, key_path)), message)
        for layer in files
        for key_path, message in find_credential_literals(loader.read(layer)[1])
    ]
    if credential_issues:  # the overlays are Git too: no credential literal in environments/*.yaml either
        raise SpecErrors(credential_issues)
    data = {"name": env_name, **data}
    try:
        return EnvironmentSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecErrors(_pydantic_issues(exc, files, loader, data, EnvironmentSpec)) from None


def _environment(root: Path, env_name: str, overrides: Sequence[str], cache: ComposeCache | None) -> tuple[EnvironmentSpec, dict[str, Any]]:
    """load_environment through the compose cache: keyed by the overlay's text and `env.*` overrides,
    checked against its defaults chain and the `oc.env` variables it reads (a warm plan needs no OmegaConf).
    With its normalised data, cached with it (a warm compose serialises no model: no validator is built)."""
    path = root / ENVIRONMENTS_DIR / f"{env_name}.yaml"
    if cache is None or not path.is_file():
        return _with_data(load_environment(root, env_name, overrides))
    loader = _FileLoader(root)
    env_overrides = tuple((k, v) for k, v in parse_overrides(overrides) if k.startswith("env."))
    try:
        text = read_text(path)
    except (OSError, YamlSyntaxError):
        return _with_data(load_environment(root, env_name, overrides))  # raises the error with its file and line
    key = cache_key("environment", env_name, text, env_overrides)
    hit = cache.get(key, "", loader.digest)
    if hit is not None:
        return hit
    value = _with_data(load_environment(root, env_name, overrides))
    try:
        files = [p for p, _ in _defaults_chain(loader, path, root / ENVIRONMENTS_DIR)]
    except (SpecErrors, YamlSyntaxError, OSError):
        return value
    cache.put(key, value, loader.dependencies(files, path, ""))
    return value


def _with_data(env: EnvironmentSpec) -> tuple[EnvironmentSpec, dict[str, Any]]:
    return env, env.model_dump(mode="json", by_alias=True)


def _spec_files(root: Path, kind: Kind) -> list[Path]:
    directory = root / SPECS_DIR / kind.directory
    if directory.is_symlink():
        return []  # reported by the tree guard
    return sorted(directory.rglob("*.yaml")) if directory.is_dir() else []


def compose(root: Path, env_name: str, overrides: Sequence[str] = (), cache: ComposeCache | None = None) -> Composed:
    """Load and validate every spec under `root/specs` for one environment. Raises SpecErrors."""
    root = Path(root)
    link_issues, bad_links = tree_issues(root, [SPECS_DIR, ENVIRONMENTS_DIR])
    if any(b.is_relative_to(root / ENVIRONMENTS_DIR) for b in bad_links):
        raise SpecErrors(link_issues)  # the environment itself cannot be read safely
    issues: list[SpecIssue] = list(link_issues)
    try:
        env, env_data = _environment(root, env_name, overrides, cache)
    except SpecErrors as exc:
        raise SpecErrors(issues + exc.issues) from None
    env_digest = hashlib.sha1(json.dumps(env_data, sort_keys=True).encode(), usedforsecurity=False).hexdigest()
    parsed = parse_overrides(overrides)
    loader = _FileLoader(root)
    loader.stats = getattr(cache, "stats", None)  # the disk cache's stat index (statindex.py)
    group_root = root / SPECS_DIR
    docs: list[SpecDoc] = []
    seen: dict[tuple[str, str], str] = {}
    raw_refs: dict[tuple[str, str], tuple[Path, list]] = {}  # files that failed the schema: their references
    for kind in KINDS:
        model = load_object(kind.spec_model)
        prefix = kind.directory + "."
        for path in _spec_files(root, kind):
            rel = loader.rel(path)
            name = path.stem
            if skipped(path, bad_links):
                continue
            if not NAME_PATTERN.match(name):
                issues.append(SpecIssue(rel, 0, "", f"file name {name!r} is not a valid resource name (lowercase, digits, '_', '-')"))
                continue
            if (kind.name, name) in seen:
                issues.append(SpecIssue(rel, 0, "", f"duplicate {kind.name} name {name!r} (also in {seen[(kind.name, name)]})"))
                continue
            seen[(kind.name, name)] = rel
            own = [(k[len(prefix) + len(name) + 1:], v) for k, v in parsed if k.startswith(f"{prefix}{name}.")]
            key = None
            if cache is not None:
                try:
                    sha = loader.sha(path)
                except YamlSyntaxError as exc:
                    issues.extend(_yaml_issues(exc, rel))
                    continue
                key = cache_key_of(kind.name, name, sha, own)
                hit = cache.get(key, env_digest, loader.digest)
                if hit is not None:
                    docs.append(SpecDoc(kind.name, name, rel, hit[0], hit[1]))
                    continue
            try:
                data, files = _materialise(loader, path, group_root, env_data, own)
            except YamlSyntaxError as exc:
                issues.extend(_yaml_issues(exc, rel))
                continue
            except SpecErrors as exc:
                issues.extend(exc.issues)
                continue
            if not isinstance(data, dict):
                issues.append(SpecIssue(rel, 1, "", "a spec file must be a mapping"))
                continue
            raw_for_secrets = loader.read(path)[1]
            credentials = list(find_credential_literals(raw_for_secrets))
            for key_path, message in credentials:
                issues.append(SpecIssue(rel, _line(path, key_path), ".".join(map(str, key_path)), message))
            try:
                spec = model.model_validate(data)
            except ValidationError as exc:
                issues.extend(_pydantic_issues(exc, files, loader, data, model))
                raw_refs[(kind.name, name)] = (path, raw_references(kind.name, data))
                continue
            normalised = spec.model_dump(mode="json", by_alias=True)
            docs.append(SpecDoc(kind.name, name, rel, spec, normalised))
            if cache is not None and not credentials:  # a refused file must be refused again
                key = cache_key_of(kind.name, name, digest_text(loader.read(path)[0]), own)  # the text validated
                cache.put(key, (spec, normalised), loader.dependencies(files, path, env_digest))
    known_override_prefixes = ("env.",) + tuple(k.directory + "." for k in KINDS)
    for key, _ in parsed:
        if not key.startswith(known_override_prefixes):
            issues.append(SpecIssue("<override>", 0, key, f"unknown override target; use env.* or <group>.<name>.* with group in {[k.directory for k in KINDS]}"))
        elif not key.startswith("env.") and not any(key.startswith(f"{directory_of(d)}.{d.name}.") for d in docs):
            if not issues:
                issues.append(SpecIssue("<override>", 0, key, "no spec with that name"))
    for path, refs in raw_refs.values():  # unknown references, reported with the schema errors
        for ref_kind, ref_name, field in refs:
            if (ref_kind, ref_name) not in seen:
                issues.append(SpecIssue(loader.rel(path), _line(path, field), ".".join(map(str, field)), f"unknown {ref_kind} {ref_name!r}"))
    issues.extend(_tls_issues(root, env_name, env, docs, loader))
    if issues:
        valid = {f"{d.kind}/{d.name}" for d in docs}
        broken = frozenset(f"{kind}/{name}" for (kind, name) in seen if f"{kind}/{name}" not in valid)
        raise SpecErrors(issues, partial=(Composed(env, tuple(docs)), broken))
    composed = Composed(env, tuple(docs))
    derived: list[SpecDoc] = []
    for kind in KINDS:
        if kind.derive:
            hook = load_object(kind.derive)
            derived.extend(hook(composed, cache.memo(f"derive:{kind.name}")) if cache is not None else hook(composed))
    if derived:
        names = {(d.kind, d.name) for d in docs}
        clashes = [SpecIssue(d.path, 0, "", f"derived {d.kind} {d.name!r} clashes with a spec of the same name") for d in derived if (d.kind, d.name) in names]
        if clashes:
            raise SpecErrors(clashes)
        composed = Composed(env, tuple(docs) + tuple(derived))
    return composed


def _tls_issues(root: Path, env_name: str, env: EnvironmentSpec, docs: list[SpecDoc], loader: _FileLoader) -> list[SpecIssue]:
    """`tls.required`: plaintext endpoints in the environment (its overlay chain) and the specs."""
    if not env.tls.required:
        return []
    env_dir = root / ENVIRONMENTS_DIR
    try:
        files = [p for p, _ in _defaults_chain(loader, env_dir / f"{env_name}.yaml", env_dir)]
    except (SpecErrors, YamlSyntaxError, OSError):
        files = [env_dir / f"{env_name}.yaml"]
    return plaintext_issues(env, lambda key_path: _locate(files, key_path, loader), docs,
                            lambda doc, key_path: _line(root / doc.path, key_path))


def directory_of(doc: SpecDoc) -> str:
    for kind in KINDS:
        if kind.name == doc.kind:
            return kind.directory
    raise KeyError(doc.kind)
