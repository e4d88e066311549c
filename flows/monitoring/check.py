"""One drift check: a cached reference profile of the training data vs a bounded sample of the prediction log.

The reference is the training table at the Delta version the current release was trained on (its lineage,
`Release.data`), sampled once and profiled; the profile is cached per (model fingerprint, Delta version)
under the state home, because recomputing reference statistics on every run is what makes drift checks slow.
The current window is the last N logged predictions of this model (rows whose `model_tag` is `<model>:…`),
logged after the release was made (so a retrain is judged on fresh traffic only and never loops), bounded in
time and sampled by DuckDB; the request's features are pulled out of the `features` JSON inside the query.

Engine module: numpy, pyarrow, deltalake and DuckDB only; no daemon imports beyond daemon.shared.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from flows.monitoring.stats import ColumnDrift, categorical_profile, column_drift, drift_share, numeric_profile

PROFILE_VERSION = 1
NUMERIC_TYPES = ("int", "float", "double", "decimal", "uint")


@dataclass(frozen=True)
class DriftSettings:
    features: tuple[str, ...]  # empty: every reference column but the target and specd's own
    target: str
    numeric: str = "wasserstein"
    categorical: str = "jensenshannon"
    numeric_threshold: float = 0.1
    categorical_threshold: float = 0.1
    drift_share: float = 0.5
    last: int = 10_000
    hours: float | None = None
    sample: int = 20_000
    min_rows: int = 200
    seed: int = 0


@dataclass
class DriftReport:
    model: str
    reference: dict[str, Any]  # {"table", "uri", "delta_version"}
    current_rows: int
    columns: list[ColumnDrift] = field(default_factory=list)
    prediction: ColumnDrift | None = None
    share: float = 0.0
    share_threshold: float = 0.5
    dataset_drift: bool = False
    enough_rows: bool = False
    checked_at: float = 0.0
    seconds: float = 0.0
    note: str = ""

    def drifted(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.drifted]

    def reason(self) -> str:
        """The plan line: which features drifted and by how much."""
        lines = ", ".join(c.line() for c in self.drifted())
        return f"features drifted: {lines} — drift share {self.share:.2f} ≥ {self.share_threshold:g}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["format_version"] = 1
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DriftReport:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["columns"] = [ColumnDrift(**c) for c in known.get("columns") or []]
        known["prediction"] = ColumnDrift(**known["prediction"]) if known.get("prediction") else None
        return cls(**known)


# -- reference --------------------------------------------------------------------------------------------
def _duckdb() -> Any:
    import duckdb

    con = duckdb.connect(config={"threads": str(min(2, os.cpu_count() or 1))})
    return con


def reference_profile(uri: str, version: int | None, settings: DriftSettings, storage_options: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Sample the training table at `version` once and profile every monitored column and the target."""
    from deltalake import DeltaTable

    table = DeltaTable(uri, version=version, storage_options=dict(storage_options or {}) or None)
    dataset = table.to_pyarrow_dataset()
    schema = {f.name: str(f.type) for f in dataset.schema}
    features = list(settings.features) or [c for c in schema if c != settings.target and not c.startswith("_specd")]
    missing = [c for c in [*features, settings.target] if c not in schema]
    if missing:
        raise ValueError(f"columns {missing} are not in the reference table {uri} (version {version})")
    con = _duckdb()
    con.register("reference", dataset)
    cols = ", ".join(_quote(c) for c in [*features, settings.target])
    sampled = con.sql(f"SELECT {cols} FROM reference USING SAMPLE reservoir({int(settings.sample)} ROWS) REPEATABLE ({int(settings.seed)})").to_arrow_table()
    con.close()
    profiles: dict[str, Any] = {}
    for name in features:
        column = sampled.column(name)
        if _is_numeric(schema[name]):
            profiles[name] = numeric_profile(column.to_numpy(zero_copy_only=False).astype(np.float64))
        else:
            profiles[name] = categorical_profile(column.to_pylist())
    target = sampled.column(settings.target).to_pylist()
    target_profile = numeric_profile(np.asarray(target, dtype=np.float64)) if _is_numeric(schema[settings.target]) and _looks_continuous(target) else categorical_profile([_label(v) for v in target if v is not None])
    return {"profile_version": PROFILE_VERSION, "uri": uri, "delta_version": version, "rows": sampled.num_rows,
            "features": features, "columns": profiles, "target": target_profile}


def cached_reference(cache_dir: Path, model: str, fingerprint: str, uri: str, version: int | None, settings: DriftSettings,
                     storage_options: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The reference profile, computed once per (model fingerprint, Delta version, monitored columns)."""
    key = f"{fingerprint[:16]}-v{version}-{_settings_key(settings)}"
    path = cache_dir / model / f"reference-{key}.json"
    try:
        data = json.loads(path.read_text())
        if data.get("profile_version") == PROFILE_VERSION:
            return data
    except (OSError, ValueError):
        pass
    profile = reference_profile(uri, version, settings, storage_options)
    write_json(path, profile)
    return profile


# -- current window ---------------------------------------------------------------------------------------
def current_sample(predictions: Any, model: str, features: Sequence[str], settings: DriftSettings, *,
                   kinds: Mapping[str, str] | None = None, since: float | None = None, now: float | None = None) -> dict[str, Any]:
    """{feature: values, "__prediction__": values} from the last N predictions of `model`, sampled, in one query.

    Each logged `features` JSON is parsed once (`from_json` into a struct typed by the reference: DOUBLE for
    numeric columns, VARCHAR otherwise; a value that does not convert is NULL). Numeric columns come back as
    float arrays (NULL → NaN), the others as lists.
    """
    kinds = kinds or {}
    con = _duckdb()
    con.register("predictions", predictions)
    bounds = ["model_tag LIKE ? ESCAPE '\\'", "prediction IS NOT NULL"]  # a failed request (NULL) carries no features
    params: list[Any] = [model.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%"]
    starts = [t for t in (since, (now or time.time()) - settings.hours * 3600 if settings.hours else None) if t is not None]
    if starts:
        bounds.append("ts > ?")
        params.append(datetime.fromtimestamp(max(starts), tz=UTC))
    struct = json.dumps({f: "DOUBLE" if kinds.get(f) == "numeric" else "VARCHAR" for f in features})
    extracts = "".join(f"s.{_quote(f)} AS {_quote(f)}, " for f in features)
    sql = (f"WITH window_rows AS (SELECT features, prediction FROM predictions WHERE {' AND '.join(bounds)} "
           f"ORDER BY ts DESC LIMIT {int(settings.last)}), "
           f"sampled AS (SELECT * FROM window_rows USING SAMPLE reservoir({int(settings.sample)} ROWS) REPEATABLE ({int(settings.seed)})), "
           f"parsed AS (SELECT from_json(features, ?) AS s, prediction FROM sampled) "
           f"SELECT {extracts}prediction AS __prediction__ FROM parsed")
    table = con.sql(sql, params=[*params, struct]).to_arrow_table()
    con.close()
    out: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        if kinds.get(name) == "numeric":
            out[name] = np.asarray(column.to_numpy(), dtype=np.float64)
        else:
            out[name] = column.to_pylist()
    return out


def kinds_of(reference: Mapping[str, Any]) -> dict[str, str]:
    return {name: reference["columns"][name]["kind"] for name in reference["features"]}


# -- the check --------------------------------------------------------------------------------------------
def check(model: str, reference: Mapping[str, Any], current: Mapping[str, Sequence[Any]], settings: DriftSettings,
          lineage: Mapping[str, Any]) -> DriftReport:
    started = time.monotonic()
    rows = len(current.get("__prediction__", []))
    report = DriftReport(model, dict(lineage), rows, share_threshold=settings.drift_share, checked_at=time.time())
    report.enough_rows = rows >= settings.min_rows
    if not report.enough_rows:
        report.note = f"{rows} logged predictions since the release (need {settings.min_rows}): no verdict"
        return report
    for name in reference["features"]:
        profile = reference["columns"][name]
        values = current.get(name, [])
        if profile["kind"] == "numeric":
            cur = values if isinstance(values, np.ndarray) else np.asarray([math.nan if v is None else _float(v) for v in values], dtype=np.float64)
            report.columns.append(column_drift(name, profile, cur, settings.numeric, settings.numeric_threshold))
        else:
            report.columns.append(column_drift(name, profile, values, settings.categorical, settings.categorical_threshold))
    target = reference["target"]
    predicted = current.get("__prediction__", [])
    if target["kind"] == "numeric":
        cur = np.asarray([_float(v) for v in predicted if v is not None], dtype=np.float64)
        report.prediction = column_drift("prediction", target, cur, settings.numeric, settings.numeric_threshold)
    else:
        report.prediction = column_drift("prediction", target, [_label(v) for v in predicted], settings.categorical, settings.categorical_threshold)
    report.share = drift_share(report.columns)
    report.dataset_drift = report.share >= settings.drift_share and bool(report.drifted())
    report.seconds = round(time.monotonic() - started, 4)
    return report


def write_json(path: Path, data: Any) -> None:
    """Atomic (temp + fsync + rename): a reader sees the old file or the new one."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _settings_key(settings: DriftSettings) -> str:
    import hashlib

    text = json.dumps([list(settings.features), settings.target, settings.sample, settings.seed])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_numeric(arrow_type: str) -> bool:
    return arrow_type.startswith(NUMERIC_TYPES) and arrow_type != "bool"


def _looks_continuous(values: Sequence[Any]) -> bool:
    distinct = {v for v in values if v is not None}
    return len(distinct) > 20 or any(isinstance(v, float) and not float(v).is_integer() for v in distinct)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _label(value: Any) -> str:
    """Logged predictions are strings ("1", "1.0", "Adelie"); the reference target may be numbers."""
    text = str(value)
    try:
        number = float(text)
        return str(int(number)) if number.is_integer() else text
    except ValueError:
        return text
