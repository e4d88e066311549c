"""The environment overlay (`environments/<env>.yaml`): where and on what the same specs run.

dev/staging/prod differ only here: storage root, devices, ports, endpoints, schedules and policies.
Sections belong to the capability that reads them; each is strict, so a typo fails validation.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from daemon.schema.base import SecretRef, SpecModel
from daemon.schema.deploy import ApprovalsSection, DeploySection
from daemon.schema.image import ImagesSection
from daemon.schema.tls import TLSSection
from daemon.shared.secrets import is_secret_ref


class StorageSection(SpecModel):
    # Relative roots live under the state home ($SPECD_HOME); absolute paths and s3:// URIs as given.
    root: str = "lake"
    data_root: str = "."  # file sources resolve under this (relative: the repo checkout)
    storage_options: dict[str, str] = Field(default_factory=dict)  # object-store options (values may be secret refs)
    # Only one process ever commits to these tables: allows commit modes unsafe under concurrent writers
    # (AWS_S3_ALLOW_UNSAFE_RENAME, conditional put disabled) on an object-store root.
    single_writer: bool = False
    # Where trained models and releases are exported for every serving host (s3://bucket/models; same
    # storage_options). Unset: the local BentoML store only.
    models_uri: str | None = None

    @field_validator("storage_options")
    @classmethod
    def _no_literal_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        from daemon.shared.storage_uri import CREDENTIAL_OPTIONS, option

        for name in CREDENTIAL_OPTIONS:
            found = option(value, name)
            if found is not None and not is_secret_ref(found):
                raise ValueError(f"{name} must be a secret reference (${{secret:NAME}}), never a literal value")
        return value

    @model_validator(mode="after")
    def _safe_commits(self) -> StorageSection:
        from daemon.shared.storage_uri import unsafe_commit_mode

        problem = unsafe_commit_mode(self.root, self.storage_options)
        if problem and not self.single_writer:
            raise ValueError(f"storage_options: {problem}; set storage.single_writer: true only if one process alone "
                             "ever writes these tables")
        if self.models_uri is not None and "://" not in self.models_uri and not self.models_uri.startswith("/"):
            raise ValueError("models_uri must be an absolute path or an object-store URI (s3://bucket/prefix)")
        return self


class DaemonSection(SpecModel):
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    poll_interval_s: float = Field(default=15.0, gt=0)
    debounce_s: float = Field(default=0.3, ge=0)
    max_parallel_actions: int = Field(default=4, ge=1)
    action_retries: int = Field(default=2, ge=0)
    retry_backoff_s: float = Field(default=1.0, ge=0)


class PrefectSection(SpecModel):
    api_url: str | None = None  # None: the daemon starts and owns a local server (SQLite, or database_url)
    host: str = "127.0.0.1"
    port: int = Field(default=4200, ge=0, le=65535)
    # The embedded server's database: a ${secret:NAME} holding a postgresql:// URL (several workers need
    # PostgreSQL: SQLite locks under concurrent workers). Unset: SQLite under the state home.
    database_url: SecretRef | None = None
    api_key: SecretRef | None = None  # sent to an existing server (api_url / PREFECT_API_URL) as PREFECT_API_KEY

    def shared(self) -> bool:
        """Whether the Prefect server can serve remote workers (not the embedded SQLite one)."""
        return bool(self.api_url or self.database_url)


PoolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


class TrainingSection(SpecModel):
    accelerator: Literal["cpu", "gpu", "cuda", "auto"] = "cpu"
    devices: int | str = 1  # per candidate (per node): GPUs, or CPU processes under ddp
    num_nodes: int = Field(default=1, ge=1)
    precision: str = "32-true"
    strategy: str = "auto"
    # lightning: one `python -m flows.training.run` per candidate (Lightning starts the DDP ranks);
    # torchrun: `torchrun --nproc_per_node=devices --nnodes=num_nodes` starts them (rendezvous from
    # SPECD_RDZV_ENDPOINT or MASTER_ADDR:MASTER_PORT when num_nodes > 1, else --standalone).
    launcher: Literal["lightning", "torchrun"] = "lightning"
    # torchrun ranks: bound on the rendezvous, the pre-flight all-reduce and every collective (a dead or
    # unreachable node fails the candidate within this instead of hanging)
    ddp_timeout_s: float = Field(default=300.0, gt=0, le=86400)
    # candidates trained at once (disjoint GPU sets); unset: on CPU one per core (up to 4), else one
    max_concurrent_candidates: int | None = Field(default=None, ge=1)
    gpu_ids: list[int] = Field(default_factory=list)  # empty: CUDA_VISIBLE_DEVICES or nvidia-smi decides
    # Several GPU servers: each candidate's training becomes a run of the Prefect deployment
    # `specd-train-candidate` in this work pool (workers: `specd worker --pool P`); unset: local processes.
    work_pool: PoolName | None = None
    work_queue: PoolName | None = None  # the queue candidates go to (one queue per GPU class); unset: the pool's default
    pool_limit: int | None = Field(default=None, ge=1)  # the pool's concurrency limit (all its servers' GPUs)
    queue_limits: dict[PoolName, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)  # queue → concurrency (its GPUs)
    repo_url: str | None = None  # where workers clone the applied sha from; unset: the repository the daemon watches
    heartbeat_timeout_s: float = Field(default=60.0, gt=0)  # a run whose worker is silent this long is lost: resubmitted
    run_attempts: int = Field(default=3, ge=1)  # submissions per candidate (a lost worker's run is submitted again)

    @model_validator(mode="after")
    def _nodes_need_torchrun(self) -> TrainingSection:
        # Lightning's own launcher starts the ranks of one machine only: other nodes would never join
        # and the candidate would wait for them forever
        if self.num_nodes > 1 and self.launcher != "torchrun":
            raise ValueError(f"num_nodes: {self.num_nodes} nodes need launcher: torchrun (one torchrun per node); "
                             "launcher: lightning starts the ranks of one machine only")
        return self


class ServicesSection(SpecModel):
    host: str = "127.0.0.1"
    port_base: int = Field(default=3100, ge=1024, le=65000)
    workers: int = Field(default=1, ge=1)
    start_timeout_s: float = Field(default=60.0, gt=0)


class GrafanaSection(SpecModel):
    url: str | None = None  # None: write dashboards and provisioning files under the state home
    token: SecretRef | None = None
    folder: str = "specd"  # one folder per environment (base.yaml: specd-${name})
    on_drift: Literal["restore", "report"] = "restore"  # a dashboard edited by hand in Grafana
    datasource_uid: str | None = None  # None: dashboards offer a Prometheus datasource picker
    timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=3, ge=0)  # per request, with exponential backoff, before the action fails (transient)
    retry_backoff_s: float = Field(default=0.5, ge=0)


class PrometheusSection(SpecModel):
    scrape_interval_s: float = Field(default=15.0, gt=0)
    evaluation_interval_s: float = Field(default=15.0, gt=0)
    out_of_sync_for: str = Field(default="15m", pattern=r"^([0-9]+(ms|s|m|h|d))+$")  # SpecdOutOfSync alert delay
    sync_stale_after_s: float = Field(default=3600.0, gt=0)  # SpecdSyncStale: no successful sync for this long
    reload_url: str | None = None  # e.g. http://127.0.0.1:9090/-/reload: POSTed after the config or rules change
    url: str = "http://127.0.0.1:9090"  # the Prometheus Grafana queries (written to the datasource provisioning file)
    runbook_base_url: str = ""  # prefix of relative alert runbook URLs (e.g. https://git.example/org/specs/blob/main/)


class DaskSection(SpecModel):
    """Where `engine: dask` tables are built: a LocalCluster on 127.0.0.1 that each build starts and
    stops ("local"), or an existing cluster's scheduler (`dask scheduler` + one `dask worker` per machine)."""

    scheduler: Annotated[str, Field(pattern=r"^(local|tcp://[^\s/]+:\d+)$")] = "local"
    workers: int = Field(default=2, ge=1)  # local only: worker processes
    threads_per_worker: int = Field(default=1, ge=1)  # local only
    partition_rows: int = Field(default=1_000_000, ge=1)  # Parquet row groups are grouped into partitions of ~this many rows


class TablesSection(SpecModel):
    # Module prefixes whose functions a `callable` table source may name as `_target_`, on top of the
    # built-in `flows.tables.sources.` (e.g. `mycompany.ingest.`). SPECD_TABLE_CALLABLE_MODULES
    # (comma-separated) replaces this list when set.
    callable_modules: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.?$")]] = Field(
        default_factory=list
    )
    dask: DaskSection = Field(default_factory=DaskSection)  # the cluster `engine: dask` tables are built on
    # Each table build as a run of `specd-build-table` on this work pool (workers: `specd worker --pool P`),
    # at the applied sha; unset: the daemon's own build processes. Needs a lake every worker reaches.
    work_pool: PoolName | None = None
    work_queue: PoolName | None = None  # the queue builds go to; unset: the pool's default
    build_timeout_s: float = Field(default=3600.0, gt=0)  # a build with no result this long is given up (transient)
    run_attempts: int = Field(default=2, ge=1)  # submissions per build (a crashed run is submitted again)
    heartbeat_timeout_s: float = Field(default=60.0, gt=0)  # a build whose worker is silent this long is lost: resubmitted


class OnlineStoreSection(SpecModel):
    """The online feature store (Redis) that tables with an `online:` block are materialised into.

    `url` unset: the embedded default — the daemon starts a private `redis-server` on 127.0.0.1:`port`
    (no persistence; it re-materialises after a restart) when a table declares `online:` and
    redis-server is installed; without it the online resources are Degraded and nothing else fails.
    `url` may be a secret reference (it can carry a password) or a plain `redis://` / `rediss://` URL.
    """

    url: str | None = None  # redis://host:port/db, rediss:// (TLS), unix:///path; or ${secret:NAME}
    port: int = Field(default=6390, ge=1024, le=65535)  # the embedded store's port (url unset)
    username: str | None = None
    password: SecretRef | None = None  # ACL/requirepass password
    ssl_ca_certs: SecretRef | str | None = None  # rediss: CA bundle path (or a secret holding the path)
    ssl_certfile: SecretRef | str | None = None  # rediss: client certificate path (mutual TLS)
    ssl_keyfile: SecretRef | None = None  # rediss: client key path, always a secret reference
    prefix: str = Field(default="specd", pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # key namespace (base.yaml: specd-${name})
    timeout_s: float = Field(default=1.0, gt=0, le=60)  # connect and per-command timeout (daemon side)
    batch_rows: int = Field(default=2000, ge=1, le=1_000_000)  # rows per pipelined round trip

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or is_secret_ref(value):
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("online_store.url must be redis://, rediss:// or unix:// (or ${secret:NAME})")
        if "@" in value.split("://", 1)[1].split("/", 1)[0] and ":" in value.split("://", 1)[1].split("@", 1)[0]:
            raise ValueError("online_store.url carries a password: make the whole URL a ${secret:NAME}, or set online_store.password")
        return value

    def embedded(self) -> bool:
        return self.url is None


class PrivacySection(SpecModel):
    # Privacy by default: a column that looks like personal data (by name at validate, by a sample of its
    # values at build) and has no `privacy` declaration is a warning; with require_declared, an error.
    require_declared: bool = False


class EnvironmentSpec(SpecModel):
    name: str
    prune: bool = False  # delete live resources whose spec was removed (per-resource `prune` overrides)
    schedules_enabled: bool = True
    auto_promote: bool = False  # online A/B verdicts commit to the watched branch instead of a proposal branch
    storage: StorageSection = Field(default_factory=StorageSection)
    daemon: DaemonSection = Field(default_factory=DaemonSection)
    prefect: PrefectSection = Field(default_factory=PrefectSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    services: ServicesSection = Field(default_factory=ServicesSection)
    grafana: GrafanaSection = Field(default_factory=GrafanaSection)
    prometheus: PrometheusSection = Field(default_factory=PrometheusSection)
    tables: TablesSection = Field(default_factory=TablesSection)
    online_store: OnlineStoreSection = Field(default_factory=OnlineStoreSection)
    privacy: PrivacySection = Field(default_factory=PrivacySection)
    deploy: DeploySection = Field(default_factory=DeploySection)  # Kubernetes manifests for services with deploy target kubernetes
    images: ImagesSection = Field(default_factory=ImagesSection)  # how `artifact.image` builds service images (base, registry, backend)
    approvals: ApprovalsSection = Field(default_factory=ApprovalsSection)  # which changes need a reviewed merge by their owners
    tls: TLSSection = Field(default_factory=TLSSection)  # TLS on every socket specd opens (daemon/schema/tls.py)

    @field_validator("training")
    @classmethod
    def _workers_need_a_shared_server(cls, training: TrainingSection, info: ValidationInfo) -> TrainingSection:
        prefect = info.data.get("prefect")
        if training.work_pool and isinstance(prefect, PrefectSection) and not prefect.shared():
            message = (f"work pool {training.work_pool!r} has remote workers, but the daemon's Prefect server would be the "
                       "embedded SQLite one, which locks under concurrent workers: set prefect.database_url (a secret "
                       "reference holding a postgresql:// URL) or prefect.api_url (an existing server)")
            raise ValidationError.from_exception_data("EnvironmentSpec", [InitErrorDetails(
                type=PydanticCustomError("value_error", message.replace("{", "{{").replace("}", "}}")),
                loc=("work_pool",), input=training.work_pool)])
        if training.queue_limits and not training.work_pool:
            raise ValidationError.from_exception_data("EnvironmentSpec", [InitErrorDetails(
                type=PydanticCustomError("value_error", "queue_limits needs training.work_pool"),
                loc=("queue_limits",), input=dict(training.queue_limits))])
        return training

    @field_validator("tables")
    @classmethod
    def _pool_builds_need_a_shared_lake(cls, tables: TablesSection, info: ValidationInfo) -> TablesSection:
        if not tables.work_pool:
            return tables
        prefect, storage = info.data.get("prefect"), info.data.get("storage")
        problem = None
        if isinstance(prefect, PrefectSection) and not prefect.shared():
            problem = (f"work pool {tables.work_pool!r} has remote workers, but the daemon's Prefect server would be the "
                       "embedded SQLite one: set prefect.database_url (a secret reference) or prefect.api_url")
        elif isinstance(storage, StorageSection) and "://" not in storage.root and not storage.root.startswith("/"):
            problem = (f"work pool {tables.work_pool!r} builds tables on other machines, but storage.root {storage.root!r} is "
                       "under the daemon's state home: use an object store (s3://bucket/prefix) or an absolute path every "
                       "worker mounts")
        if problem:
            raise ValidationError.from_exception_data("EnvironmentSpec", [InitErrorDetails(
                type=PydanticCustomError("value_error", problem.replace("{", "{{").replace("}", "}}")),
                loc=("work_pool",), input=tables.work_pool)])
        return tables
