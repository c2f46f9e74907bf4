//! The metric-name contract of the storage server (DESIGN §2.6): names and the fixed
//! label values the server exports and the dashboard, alert rules and Grafana read.
//!
//! Change these only together with everything that reads them. Every label value comes
//! from a small fixed set, never from a key, usecase, scope or user.

/// Metric names, shared with the dashboard, alert rules and Grafana (tests check them).
pub mod names {
    /// Requests whose credentials or permissions failed, by `code` and `reason`.
    pub const AUTH_FAILURES_TOTAL: &str = "strata_auth_failures_total";
    /// Requests refused (or, report-only, counted) by a rate limit, by `kind`.
    pub const RATE_LIMITED_TOTAL: &str = "strata_rate_limited_total";
    /// Requests refused by a killswitch.
    pub const KILLSWITCH_HITS_TOTAL: &str = "strata_killswitch_hits_total";
    /// Storage operations currently running in spawned tasks.
    pub const TASKS_RUNNING: &str = "strata_service_tasks_running";
    /// Operations waiting in the service-tier queue.
    pub const TASKS_QUEUED: &str = "strata_service_tasks_queued";
    /// The service-tier permit count (`service.max_concurrency`).
    pub const TASKS_LIMIT: &str = "strata_service_tasks_limit";
    /// Bulk (batch) permits held right now; at most `ceil(max_concurrency × bulk_percent / 100)`.
    pub const BULK_TASKS_RUNNING: &str = "strata_service_bulk_tasks_running";
    /// Operations by `operation` and `outcome`.
    pub const OPERATIONS_TOTAL: &str = "strata_service_operations_total";
    /// Operation latency by `operation`.
    pub const OPERATION_DURATION: &str = "strata_service_operation_duration_seconds";
    /// Service-tier rejections by `reason`.
    pub const SERVICE_REJECTIONS_TOTAL: &str = "strata_service_rejections_total";
    /// Panics caught in operation tasks, by `operation`.
    pub const PANICS_TOTAL: &str = "strata_service_panics_total";
    /// Read-only operations stopped because their client went away, by `operation`.
    pub const CANCELLATIONS_TOTAL: &str = "strata_service_cancellations_total";
    /// Jobs waiting for a worker of the pooled executor, by `priority`
    /// (`interactive`, `bulk`, `background`); always 0 with `service.executor: spawn`.
    pub const EXECUTOR_QUEUE_DEPTH: &str = "strata_service_executor_queue_depth";
    /// Workers of the pooled executor (`service.workers`; 0 with `spawn`).
    pub const WORKERS: &str = "strata_service_workers";
    /// Pool workers running a job right now (utilisation = busy / workers).
    pub const WORKERS_BUSY: &str = "strata_service_workers_busy";
    /// Background chores waiting in `service.background_queue`.
    pub const BACKGROUND_JOBS_QUEUED: &str = "strata_service_background_jobs_queued";
    /// Background chores running now.
    pub const BACKGROUND_JOBS_RUNNING: &str = "strata_service_background_jobs_running";
    /// Background chores that succeeded (possibly after retries), by `job`.
    pub const BACKGROUND_JOBS_COMPLETED_TOTAL: &str =
        "strata_service_background_jobs_completed_total";
    /// Background chores that failed every attempt, by `job`.
    pub const BACKGROUND_JOBS_FAILED_TOTAL: &str = "strata_service_background_jobs_failed_total";
    /// Background chores never run: the queue was full, or shutdown left them, by `job`.
    pub const BACKGROUND_JOBS_DROPPED_TOTAL: &str = "strata_service_background_jobs_dropped_total";
    /// Time-to-idle deadline bumps started by reads, by `outcome` ([`super::TtiBumpOutcome`]).
    pub const TTI_BUMPS_TOTAL: &str = "strata_service_tti_bumps_total";
    /// HTTP requests in flight (internal routes included).
    pub const HTTP_IN_FLIGHT: &str = "strata_http_requests_in_flight";
    /// The web-tier limit (`http.max_requests`).
    pub const HTTP_LIMIT: &str = "strata_http_requests_limit";
    /// Requests rejected by the web tier with 503.
    pub const HTTP_REJECTIONS_TOTAL: &str = "strata_http_rejections_total";
    /// Clients cut off by an HTTP deadline, by `phase` ([`TimeoutPhase`]): their
    /// connection was closed (`header`) or their request got 408 (`body_idle`, `request`).
    pub const HTTP_REQUEST_TIMEOUTS_TOTAL: &str = "strata_http_request_timeouts_total";
    /// Requests by `method` and `status` class.
    pub const HTTP_REQUESTS_TOTAL: &str = "strata_http_requests_total";
    /// Request latency by `method`.
    pub const HTTP_DURATION: &str = "strata_http_request_duration_seconds";
    /// Payload bytes by `direction` (`in`, `out`).
    pub const BYTES_TOTAL: &str = "strata_bytes_total";
    /// Always 1; carries the `version` label.
    pub const BUILD_INFO: &str = "strata_build_info";
    /// Group commits of the filesystem backend's object log.
    pub const LOG_COMMITS_TOTAL: &str = "strata_storage_log_commits_total";
    /// Records those commits made durable (records / commits = mean batch size).
    pub const LOG_RECORDS_TOTAL: &str = "strata_storage_log_records_total";
    /// Bytes in all log segments.
    pub const LOG_BYTES: &str = "strata_storage_log_bytes";
    /// Bytes of log records that are current versions (the rest awaits compaction).
    pub const LOG_LIVE_BYTES: &str = "strata_storage_log_live_bytes";
    /// Log segment files.
    pub const LOG_SEGMENTS: &str = "strata_storage_log_segments";
    /// 1 once a failed sync made the log refuse writes until a restart.
    pub const LOG_READ_ONLY: &str = "strata_storage_log_read_only";
    /// 1 while the log's writer thread runs; 0 once it died (the server is then not
    /// ready and refuses writes until a restart).
    pub const WRITER_ALIVE: &str = "strata_storage_writer_alive";
    /// Segments rewritten by compaction.
    pub const COMPACTIONS_TOTAL: &str = "strata_storage_compactions_total";
    /// Objects by `location` (`log`, `file`).
    pub const OBJECTS: &str = "strata_storage_objects";
}

/// Operation label values (`operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// O1/O2.
    Insert,
    /// O3.
    Get,
    /// O4.
    Head,
    /// O5.
    Delete,
    /// E1 (PATCH).
    ExtendExpiry,
    /// A batch (B1) insert part.
    BatchInsert,
    /// A batch get part.
    BatchGet,
    /// A batch head part.
    BatchHead,
    /// A batch delete part.
    BatchDelete,
    /// M1/M2.
    MultipartInitiate,
    /// M3.
    MultipartUploadPart,
    /// M4.
    MultipartListParts,
    /// M5.
    MultipartComplete,
    /// M6.
    MultipartAbort,
    /// R1/R2.
    ResumableCreate,
    /// R3.
    ResumableChunk,
    /// R4.
    ResumableOffset,
    /// R5.
    ResumableCancel,
}

impl Operation {
    /// Every operation, for pre-registering label sets so series exist at zero.
    pub const ALL: &'static [Operation] = &[
        Operation::Insert,
        Operation::Get,
        Operation::Head,
        Operation::Delete,
        Operation::ExtendExpiry,
        Operation::BatchInsert,
        Operation::BatchGet,
        Operation::BatchHead,
        Operation::BatchDelete,
        Operation::MultipartInitiate,
        Operation::MultipartUploadPart,
        Operation::MultipartListParts,
        Operation::MultipartComplete,
        Operation::MultipartAbort,
        Operation::ResumableCreate,
        Operation::ResumableChunk,
        Operation::ResumableOffset,
        Operation::ResumableCancel,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Get => "get",
            Operation::Head => "head",
            Operation::Delete => "delete",
            Operation::ExtendExpiry => "extend_expiry",
            Operation::BatchInsert => "batch_insert",
            Operation::BatchGet => "batch_get",
            Operation::BatchHead => "batch_head",
            Operation::BatchDelete => "batch_delete",
            Operation::MultipartInitiate => "multipart_initiate",
            Operation::MultipartUploadPart => "multipart_upload_part",
            Operation::MultipartListParts => "multipart_list_parts",
            Operation::MultipartComplete => "multipart_complete",
            Operation::MultipartAbort => "multipart_abort",
            Operation::ResumableCreate => "resumable_create",
            Operation::ResumableChunk => "resumable_chunk",
            Operation::ResumableOffset => "resumable_offset",
            Operation::ResumableCancel => "resumable_cancel",
        }
    }
}

/// Outcome label values (`outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Completed successfully.
    Ok,
    /// The object did not exist (or had expired).
    NotFound,
    /// Backend or I/O failure.
    Error,
    /// Refused by the service-tier limiter.
    Rejected,
    /// The task panicked.
    Panic,
    /// A read-only operation stopped because its client went away.
    Cancelled,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::NotFound,
        Outcome::Error,
        Outcome::Rejected,
        Outcome::Panic,
        Outcome::Cancelled,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Error => "error",
            Outcome::Rejected => "rejected",
            Outcome::Panic => "panic",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Service-tier rejection reasons (`reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No permit free and no queue slot (or no queue).
    AtCapacity,
    /// Waited in the queue for `queue_timeout` without a permit.
    QueueTimeout,
}

impl RejectReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::AtCapacity => "at_capacity",
            RejectReason::QueueTimeout => "queue_timeout",
        }
    }
}

/// Background chore label values (`job`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackgroundJob {
    /// Removing expired objects.
    ExpirySweep,
    /// Removing multipart uploads and resumable sessions untouched for `upload_max_age`.
    UploadCleanup,
    /// Deleting a long-term object a committed tiered write or delete left unreferenced.
    OrphanCleanup,
}

impl BackgroundJob {
    /// Every job kind, for pre-registering label sets.
    pub const ALL: [BackgroundJob; 3] = [
        BackgroundJob::ExpirySweep,
        BackgroundJob::UploadCleanup,
        BackgroundJob::OrphanCleanup,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            BackgroundJob::ExpirySweep => "expiry_sweep",
            BackgroundJob::UploadCleanup => "upload_cleanup",
            BackgroundJob::OrphanCleanup => "orphan_cleanup",
        }
    }
}

/// `outcome` label values of `strata_service_tti_bumps_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TtiBumpOutcome {
    /// The new deadline was written.
    Applied,
    /// The object changed meanwhile (overwritten, deleted or already bumped).
    Superseded,
    /// The write failed (the read was served anyway).
    Failed,
    /// Not started: a bump of the same key was already running.
    Coalesced,
}

impl TtiBumpOutcome {
    /// Every value, for pre-registering label sets.
    pub const ALL: &'static [TtiBumpOutcome] = &[
        TtiBumpOutcome::Applied,
        TtiBumpOutcome::Superseded,
        TtiBumpOutcome::Failed,
        TtiBumpOutcome::Coalesced,
    ];

    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            TtiBumpOutcome::Applied => "applied",
            TtiBumpOutcome::Superseded => "superseded",
            TtiBumpOutcome::Failed => "failed",
            TtiBumpOutcome::Coalesced => "coalesced",
        }
    }
}

/// Which HTTP deadline cut a client off (`phase` of `strata_http_request_timeouts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutPhase {
    /// The request head was not complete within `http.header_read_timeout`.
    Header,
    /// The body delivered nothing for `http.body_idle_timeout`.
    BodyIdle,
    /// The body was not complete within `http.request_timeout`.
    Request,
}

impl TimeoutPhase {
    /// Every phase, for pre-registering label sets so series exist at zero.
    pub const ALL: [TimeoutPhase; 3] = [
        TimeoutPhase::Header,
        TimeoutPhase::BodyIdle,
        TimeoutPhase::Request,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Header => "header",
            TimeoutPhase::BodyIdle => "body_idle",
            TimeoutPhase::Request => "request",
        }
    }
}
