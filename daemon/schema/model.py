"""Model specs: a gold table → trained, evaluated A/B candidates and a champion chosen by a written rule.

The base sections (`model`, `optim`, `trainer`, `preprocessing`) describe candidate "a" and every
other candidate is a list of Hydra overrides on them (`b: [model.hidden=[256,128], optim.lr=3e-4]`).
Each candidate is resolved and validated here, so a malformed override, an unknown key or a model
`_target_` outside the allowlist is a `file:line` error at `specd validate` — not a crash at training.
Column existence is checked against the live table by `ModelAdapter.check` (it needs the table).

Light by rule: pydantic + daemon.schema only (Hydra's grammar is imported lazily for candidates).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from daemon.schema.base import Ref, ResourceName, SpecModel
from daemon.schema.calibration import CalibrationSpec
from daemon.schema.monitoring import MonitoringSpec
from daemon.schema.retrain import RetrainSpec

Task = Literal["binary", "multiclass", "regression"]

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2")
FAIRNESS_METRICS = ("demographic_parity_difference", "equal_opportunity_difference")
METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary": CLASSIFICATION_METRICS + FAIRNESS_METRICS,
    "multiclass": CLASSIFICATION_METRICS,
    "regression": REGRESSION_METRICS,
}
MINIMIZED = {"log_loss", "mae", "rmse", *FAIRNESS_METRICS}
CANDIDATE_SECTIONS = ("model", "optim", "trainer", "preprocessing")


class MLPParams(SpecModel):
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"

    @field_validator("hidden")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(size < 1 for size in value):
            raise ValueError("hidden layer sizes must be ≥ 1")
        return value


class LinearParams(SpecModel):
    """The logistic baseline takes no parameters: any key under `model:` besides `_target_` is an error."""


# The `_target_` allowlist: LightningModules specd knows how to train, save and serve.
ALLOWED_MODELS: dict[str, type[SpecModel]] = {
    "flows.training.models.TabularMLP": MLPParams,
    "flows.training.models.LogisticBaseline": LinearParams,
    "flows.training.models.LinearBaseline": LinearParams,
}


class OptimSpec(SpecModel):
    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)


class TrainerSpec(SpecModel):
    epochs: int = Field(default=20, ge=1, le=100_000)
    batch_size: int = Field(default=256, ge=1)
    seed: int = 0
    deterministic: bool = True
    gradient_clip: float | None = Field(default=None, gt=0)


class NumericPrep(SpecModel):
    impute: Literal["mean", "median", "zero", "none"] = "median"
    scale: Literal["standard", "minmax", "robust", "none"] = "standard"


class CategoricalPrep(SpecModel):
    impute: Literal["most_frequent", "constant", "none"] = "most_frequent"
    encode: Literal["onehot", "ordinal", "frequency"] = "onehot"
    max_categories: int = Field(default=64, ge=1)


class ColumnPrep(SpecModel):
    impute: Literal["mean", "median", "zero", "none", "most_frequent", "constant"] | None = None
    scale: Literal["standard", "minmax", "robust", "none"] | None = None
    encode: Literal["onehot", "ordinal", "frequency"] | None = None


class PreprocessingSpec(SpecModel):
    numeric: NumericPrep = Field(default_factory=NumericPrep)
    categorical: CategoricalPrep = Field(default_factory=CategoricalPrep)
    columns: dict[str, ColumnPrep] = Field(default_factory=dict)  # per-column overrides


class DataSpec(SpecModel):
    table: ResourceName
    target: str
    features: list[str] = Field(default_factory=list)  # empty: every column but target, exclude and key
    exclude: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> DataSpec:
        if self.features and self.exclude:
            raise ValueError("give either data.features or data.exclude, not both")
        if self.target in self.features:
            raise ValueError(f"target {self.target!r} is also listed as a feature")
        return self


class SplitSpec(SpecModel):
    holdout: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0
    by: Literal["random", "group", "time"] = "random"
    column: str | None = None  # group column (by: group) or time column (by: time: the latest rows are held out)
    folds: int = Field(default=0, ge=0, le=20)  # k-fold cross-validation on the training part (0: off)

    @model_validator(mode="after")
    def _column(self) -> SplitSpec:
        if self.by != "random" and not self.column:
            raise ValueError(f"split.by {self.by!r} needs split.column")
        if self.folds == 1:
            raise ValueError("split.folds must be 0 (off) or ≥ 2")
        return self


class Guardrail(SpecModel):
    metric: str
    min: float | None = None
    max: float | None = None
    attribute: str | None = None  # for fairness metrics: which sensitive attribute

    @model_validator(mode="after")
    def _bound(self) -> Guardrail:
        if self.min is None and self.max is None:
            raise ValueError("a guardrail needs min or max")
        return self


class PromotionSpec(SpecModel):
    metric: str
    direction: Literal["maximize", "minimize"] | None = None  # default from the metric
    min_improvement: float = Field(default=0.0, ge=0)
    guardrails: list[Guardrail] = Field(default_factory=list)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize" if self.direction else self.metric not in MINIMIZED


class ModelSpec(SpecModel):
    description: str = ""
    owners: list[str] = Field(default_factory=list)  # metadata: changes update the release's labels, never retrain
    tags: list[str] = Field(default_factory=list)
    data: DataSpec
    task: Task
    split: SplitSpec = Field(default_factory=SplitSpec)
    preprocessing: PreprocessingSpec = Field(default_factory=PreprocessingSpec)
    model: dict[str, Any] = Field(default_factory=lambda: {"_target_": "flows.training.models.TabularMLP"})
    optim: OptimSpec = Field(default_factory=OptimSpec)
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    candidates: dict[str, list[str]] = Field(default_factory=lambda: {"a": []})
    promotion: PromotionSpec
    sensitive_attributes: list[str] = Field(default_factory=list)
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)  # when new data in the table retrains (daemon.schema.retrain)
    prune: bool | None = None
    monitoring: MonitoringSpec | None = None  # drift of production traffic (daemon/schema/monitoring.py)
    calibration: CalibrationSpec | None = None  # probability calibration after training (binary; applied at serving)

    def references(self) -> list[Ref]:
        return [Ref("table", self.data.table, ("data", "table"))]

    @field_validator("model")
    @classmethod
    def _model_target(cls, value: dict[str, Any]) -> dict[str, Any]:
        _validate_model_section(value)
        return value

    @field_validator("candidates")
    @classmethod
    def _candidate_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value:
            raise ValueError("at least one candidate is needed (e.g. `a: []`)")
        for name in value:
            if not _valid_candidate_name(name):
                raise ValueError(f"candidate name {name!r}: use lowercase letters, digits and '_' (max 32)")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> ModelSpec:
        errors: list[InitErrorDetails] = []

        def fail(loc: tuple, message: str, value: Any) -> None:
            errors.append(InitErrorDetails(type=PydanticCustomError("model_spec", message), loc=loc, input=value))

        known = METRICS_BY_TASK[self.task]
        if self.promotion.metric not in known:
            fail(("promotion", "metric"), f"task {self.task!r} has no metric {self.promotion.metric!r} (has: {', '.join(known)})", self.promotion.metric)
        for index, guard in enumerate(self.promotion.guardrails):
            if guard.metric not in known:
                fail(("promotion", "guardrails", index, "metric"), f"task {self.task!r} has no metric {guard.metric!r} (has: {', '.join(known)})", guard.metric)
            elif guard.metric in FAIRNESS_METRICS:
                if not guard.attribute:
                    fail(("promotion", "guardrails", index, "attribute"), "a fairness guardrail needs `attribute`", None)
                elif guard.attribute not in self.sensitive_attributes:
                    fail(("promotion", "guardrails", index, "attribute"), f"{guard.attribute!r} is not in sensitive_attributes", guard.attribute)
        if self.promotion.metric in FAIRNESS_METRICS:
            fail(("promotion", "metric"), "promote on a model-quality metric; use fairness metrics as guardrails", self.promotion.metric)
        if self.calibration is not None and self.task != "binary":
            fail(("calibration",), f"probability calibration is for task 'binary' (this model's task is {self.task!r})", self.task)
        if self.retrain.on == "drift" and self.monitoring is None:
            fail(("retrain", "on"), "retrain on drift needs a `monitoring:` block (which features, window, thresholds)", "drift")
        for name, overrides in self.candidates.items():
            for index, problem in candidate_problems(self, name, overrides):
                fail(("candidates", name, index) if index is not None else ("candidates", name), problem, overrides)
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def candidate_config(self, name: str) -> dict[str, Any]:
        """The resolved sections of one candidate (base sections + its overrides), as plain data."""
        config, problems = resolve_candidate(self, self.candidates[name])
        if problems:
            raise ValueError("; ".join(p for _, p in problems))
        return config

    def metric_direction(self) -> str:
        return "maximize" if self.promotion.maximize else "minimize"


def _valid_candidate_name(name: str) -> bool:
    return bool(name) and len(name) <= 32 and name[0].isalpha() and all(c.isdigit() or c == "_" or ("a" <= c <= "z") for c in name)


def _validate_model_section(value: dict[str, Any]) -> None:
    target = value.get("_target_")
    if not target:
        raise ValueError("model._target_ is required")
    if target not in ALLOWED_MODELS:
        raise ValueError(f"_target_ {target!r} is not in the allowlist ({', '.join(sorted(ALLOWED_MODELS))})")
    params = {k: v for k, v in value.items() if k != "_target_"}
    try:
        ALLOWED_MODELS[target].model_validate(params)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"model.{where}: {first['msg']} (for {target})") from None


def base_sections(spec: ModelSpec) -> dict[str, Any]:
    return {
        "model": dict(spec.model),
        "optim": spec.optim.model_dump(mode="json"),
        "trainer": spec.trainer.model_dump(mode="json"),
        "preprocessing": spec.preprocessing.model_dump(mode="json"),
        **({"calibration": spec.calibration.model_dump(mode="json")} if spec.calibration is not None else {}),
    }


def resolve_candidate(spec: ModelSpec, overrides: list[str]) -> tuple[dict[str, Any], list[tuple[int | None, str]]]:
    """Apply one candidate's overrides to the base sections. Returns (config, [(override index, problem)])."""
    from daemon.schema.overrides import parse_overrides
    from daemon.shared.errors import SpecErrors

    config = copy.deepcopy(base_sections(spec))
    problems: list[tuple[int | None, str]] = []
    for index, text in enumerate(overrides):
        if not isinstance(text, str):
            problems.append((index, f"override must be a string like 'optim.lr=3e-4', got {text!r}"))
            continue
        try:
            ((key, value),) = parse_overrides([text])
        except SpecErrors as exc:
            problems.append((index, exc.issues[0].message.splitlines()[0]))
            continue
        path = key.split(".")
        if path[0] not in CANDIDATE_SECTIONS:
            problems.append((index, f"override {key!r}: candidates may override {', '.join(CANDIDATE_SECTIONS)}"))
            continue
        if len(path) == 1:
            if not isinstance(value, dict):
                problems.append((index, f"override {key!r}: a whole section takes a mapping, e.g. {key}={{...}}"))
                continue
            config[path[0]] = dict(value)
            continue
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append((index, f"override {key!r}: {part!r} is not a section"))
                break
        else:
            node[path[-1]] = value
    if problems:
        return config, problems
    try:
        _validate_model_section(config["model"])
    except ValueError as exc:
        problems.append((None, str(exc)))
    for section, model in (("optim", OptimSpec), ("trainer", TrainerSpec), ("preprocessing", PreprocessingSpec)):
        try:
            config[section] = model.model_validate(config[section]).model_dump(mode="json")
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                where = ".".join(str(p) for p in error["loc"])
                problems.append((None, f"{section}.{where}: {error['msg']}"))
    return config, problems


def candidate_problems(spec: ModelSpec, name: str, overrides: list[str]) -> list[tuple[int | None, str]]:
    return resolve_candidate(spec, overrides)[1]
