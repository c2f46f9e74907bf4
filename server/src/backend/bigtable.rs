//! Google Cloud Bigtable backend (high-volume tier): one row per object, shared by
//! every server pod.
//!
//! Row layout: the metadata (`m`, JSON without size), the size (`s`, decimal) and the
//! payload (`p`) live in one row, so one read serves a GET and one mutation replaces an
//! object atomically. Objects without a deadline use the family `fm`; objects with one
//! use `fe`, whose cells carry the deadline as their timestamp, so the family's
//! garbage-collection rule (`max_age`) removes them once it passed. Reads never serve
//! expired objects (the service checks the deadline), and [`Backend::sweep_expired`]
//! deletes them too, for engines (the emulator) that collect garbage lazily.
//! Compare-and-swap is a `CheckAndMutateRow` whose predicate matches the exact stored
//! metadata bytes.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bigtable_rs::bigtable::{BigTable, BigTableConnection, RowCell};
use bigtable_rs::google::bigtable::v2::{
    mutation, row_filter, CheckAndMutateRowRequest, MutateRowRequest, Mutation, ReadRowsRequest,
    RowFilter, RowSet, TimestampRange,
};
use bytes::Bytes;
use futures::StreamExt;

use super::{storage_key, Backend, BackendError, Payload, PayloadStream, StoredObject};
use crate::config::StorageConfig;
use crate::object::{Metadata, ObjectId};

const NAME: &str = "bigtable";
/// Family of objects without a deadline (no garbage collection).
const FAMILY_MANUAL: &str = "fm";
/// Family of objects with a deadline; cell timestamps are the deadline.
const FAMILY_EXPIRING: &str = "fe";
const COL_META: &[u8] = b"m";
const COL_SIZE: &[u8] = b"s";
const COL_PAYLOAD: &[u8] = b"p";
/// Largest payload kept in one row; larger objects belong in a `tiered` long-term store.
pub const MAX_OBJECT: u64 = 16 * 1024 * 1024;
/// Per-RPC timeout; a stalled Bigtable fails requests instead of hanging them.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Objects as Bigtable rows.
#[derive(Clone)]
pub struct BigtableBackend {
    client: BigTable,
    table: String,
    shown: String,
}

impl std::fmt::Debug for BigtableBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigtableBackend")
            .field("table", &self.shown)
            .finish_non_exhaustive()
    }
}

fn unavailable(err: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable {
        backend: NAME,
        message: err.to_string(),
    }
}

impl BigtableBackend {
    /// Connects (creating the table first when `create_table` is set) and checks that
    /// the table answers; a missing table or an unreachable endpoint fails here.
    pub async fn open(config: &StorageConfig) -> Result<Self, BackendError> {
        let StorageConfig::Bigtable {
            endpoint,
            project_id,
            instance_name,
            table_name,
            connections,
            create_table,
        } = config
        else {
            return Err(BackendError::Config("not a bigtable section".to_owned()));
        };
        let channels = connections.unwrap_or(1).max(1);
        let emulator = endpoint
            .clone()
            .or_else(|| std::env::var("BIGTABLE_EMULATOR_HOST").ok());
        let target = emulator
            .clone()
            .unwrap_or_else(|| "bigtable.googleapis.com".into());
        let shown = format!("{project_id}/{instance_name}/{table_name} at {target}");
        let mut connection = match &emulator {
            Some(host) => BigTableConnection::new_with_emulator(
                host,
                project_id,
                instance_name,
                false,
                channels,
                Some(RPC_TIMEOUT),
            ),
            None => {
                BigTableConnection::new(
                    project_id,
                    instance_name,
                    false,
                    channels,
                    Some(RPC_TIMEOUT),
                )
                .await
            }
        }
        .map_err(|err| BackendError::Config(format!("bigtable at {target}: {err}")))?;
        connection.configure_inner_client(|client| {
            client.max_decoding_message_size(2 * MAX_OBJECT as usize)
        });
        if *create_table {
            let Some(host) = &emulator else {
                return Err(BackendError::Config(
                    "bigtable create_table needs an emulator endpoint; create production tables with families fm and fe (max_age gc) beforehand".to_owned(),
                ));
            };
            admin::create_table(host, project_id, instance_name, table_name)
                .await
                .map_err(|err| {
                    BackendError::Config(format!(
                        "bigtable at {target}: cannot create table {table_name}: {err}"
                    ))
                })?;
        }
        let client = connection.client();
        let table = client.get_full_table_name(table_name);
        let backend = Self {
            client,
            table,
            shown,
        };
        backend.probe().await.map_err(|err| match err {
            BackendError::Config(message) => BackendError::Config(message),
            other => BackendError::Config(format!("bigtable {}: {other}", backend.shown)),
        })?;
        Ok(backend)
    }

    async fn read_row(
        &self,
        key: &[u8],
        filter: RowFilter,
    ) -> Result<Option<Vec<RowCell>>, BackendError> {
        let request = ReadRowsRequest {
            table_name: self.table.clone(),
            rows: Some(RowSet {
                row_keys: vec![key.to_vec()],
                row_ranges: vec![],
            }),
            filter: Some(filter),
            rows_limit: 1,
            ..Default::default()
        };
        let rows = self
            .client
            .clone()
            .read_rows(request)
            .await
            .map_err(|err| self.rpc_error(err))?;
        Ok(rows.into_iter().next().map(|(_, cells)| cells))
    }

    async fn mutate(&self, key: Vec<u8>, mutations: Vec<Mutation>) -> Result<(), BackendError> {
        let request = MutateRowRequest {
            table_name: self.table.clone(),
            row_key: key,
            mutations,
            ..Default::default()
        };
        self.client
            .clone()
            .mutate_row(request)
            .await
            .map_err(|err| self.rpc_error(err))?;
        Ok(())
    }

    /// Applies `mutations` when `predicate` matches (or, with `when_absent`, when it
    /// matches nothing); returns whether they were applied.
    async fn check_and_mutate(
        &self,
        key: Vec<u8>,
        predicate: RowFilter,
        mutations: Vec<Mutation>,
        when_absent: bool,
    ) -> Result<bool, BackendError> {
        let (true_mutations, false_mutations) = if when_absent {
            (vec![], mutations)
        } else {
            (mutations, vec![])
        };
        let request = CheckAndMutateRowRequest {
            table_name: self.table.clone(),
            row_key: key,
            predicate_filter: Some(predicate),
            true_mutations,
            false_mutations,
            ..Default::default()
        };
        let response = self
            .client
            .clone()
            .check_and_mutate_row(request)
            .await
            .map_err(|err| self.rpc_error(err))?;
        Ok(response.predicate_matched != when_absent)
    }

    fn rpc_error(&self, err: bigtable_rs::bigtable::Error) -> BackendError {
        if let bigtable_rs::bigtable::Error::RpcError(status) = &err {
            if status.code() == tonic::Code::NotFound {
                return BackendError::Config(format!(
                    "bigtable table {} does not exist: {}",
                    self.shown,
                    status.message()
                ));
            }
        }
        unavailable(err)
    }
}

fn filter(f: row_filter::Filter) -> RowFilter {
    RowFilter { filter: Some(f) }
}

fn chain(filters: Vec<RowFilter>) -> RowFilter {
    filter(row_filter::Filter::Chain(row_filter::Chain { filters }))
}

fn latest() -> RowFilter {
    filter(row_filter::Filter::CellsPerColumnLimitFilter(1))
}

fn columns(pattern: &str) -> RowFilter {
    filter(row_filter::Filter::ColumnQualifierRegexFilter(
        pattern.as_bytes().to_vec(),
    ))
}

/// An RE2 pattern matching exactly `bytes` (ASCII punctuation escaped, NUL as `\x00`).
fn exact_regex(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        if b == 0 {
            out.extend_from_slice(b"\\x00");
        } else if b.is_ascii() && !b.is_ascii_alphanumeric() && b != b'_' {
            out.push(b'\\');
            out.push(b);
        } else {
            out.push(b);
        }
    }
    out
}

/// Matches a row whose current metadata is exactly `metadata`.
fn metadata_is(metadata: &Metadata) -> RowFilter {
    chain(vec![
        columns("^m$"),
        latest(),
        filter(row_filter::Filter::ValueRegexFilter(exact_regex(
            &encode_metadata(metadata),
        ))),
    ])
}

fn encode_metadata(metadata: &Metadata) -> Vec<u8> {
    let mut metadata = metadata.clone();
    metadata.size = None;
    serde_json::to_vec(&metadata).expect("metadata serializes")
}

/// Bigtable timestamps are microseconds at millisecond granularity.
fn micros(time: SystemTime) -> i64 {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    i64::try_from(millis * 1000).unwrap_or(i64::MAX - 1000)
}

/// The mutations replacing a row by one object.
fn write_object(metadata: &Metadata, payload: &[u8]) -> Vec<Mutation> {
    let (family, timestamp) = match metadata.time_expires {
        Some(deadline) => (FAMILY_EXPIRING, micros(deadline)),
        None => (FAMILY_MANUAL, 0),
    };
    let set = |column: &[u8], value: Vec<u8>| Mutation {
        mutation: Some(mutation::Mutation::SetCell(mutation::SetCell {
            family_name: family.to_owned(),
            column_qualifier: column.to_vec(),
            timestamp_micros: timestamp,
            value,
        })),
    };
    vec![
        delete_row(),
        set(COL_META, encode_metadata(metadata)),
        set(COL_SIZE, payload.len().to_string().into_bytes()),
        set(COL_PAYLOAD, payload.to_vec()),
    ]
}

fn delete_row() -> Mutation {
    Mutation {
        mutation: Some(mutation::Mutation::DeleteFromRow(
            mutation::DeleteFromRow {},
        )),
    }
}

/// Metadata (with size) and payload of a row's cells.
fn decode(cells: Vec<RowCell>) -> Result<(Metadata, Option<Vec<u8>>), BackendError> {
    let mut metadata = None;
    let mut size = None;
    let mut payload = None;
    for cell in cells {
        match cell.qualifier.as_slice() {
            COL_META => metadata = Some(cell.value),
            COL_SIZE => size = Some(cell.value),
            COL_PAYLOAD => payload = Some(cell.value),
            _ => {}
        }
    }
    let raw =
        metadata.ok_or_else(|| BackendError::Corrupt("bigtable row without metadata".into()))?;
    let mut metadata: Metadata = serde_json::from_slice(&raw)
        .map_err(|err| BackendError::Corrupt(format!("bigtable metadata: {err}")))?;
    metadata.size = match (&payload, size) {
        (Some(payload), _) => Some(payload.len() as u64),
        (None, Some(size)) => std::str::from_utf8(&size).ok().and_then(|s| s.parse().ok()),
        (None, None) => None,
    };
    Ok((metadata, payload))
}

#[async_trait]
impl Backend for BigtableBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn put(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        mut payload: PayloadStream,
    ) -> Result<u64, BackendError> {
        let mut body = Vec::new();
        while let Some(chunk) = payload.next().await {
            body.extend_from_slice(&chunk.map_err(BackendError::Payload)?);
            if body.len() as u64 > MAX_OBJECT {
                return Err(BackendError::TooLarge {
                    backend: NAME,
                    limit: MAX_OBJECT,
                });
            }
        }
        self.mutate(storage_key(id).into_bytes(), write_object(metadata, &body))
            .await?;
        Ok(body.len() as u64)
    }

    async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError> {
        let Some(cells) = self.read_row(storage_key(id).as_bytes(), latest()).await? else {
            return Ok(None);
        };
        let (metadata, payload) = decode(cells)?;
        Ok(Some(StoredObject {
            metadata,
            payload: Payload::Bytes(Bytes::from(payload.unwrap_or_default())),
        }))
    }

    async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError> {
        let cells = self
            .read_row(
                storage_key(id).as_bytes(),
                chain(vec![columns("^[ms]$"), latest()]),
            )
            .await?;
        cells.map(|cells| decode(cells).map(|(m, _)| m)).transpose()
    }

    async fn delete(&self, id: &ObjectId) -> Result<(), BackendError> {
        self.mutate(storage_key(id).into_bytes(), vec![delete_row()])
            .await
    }

    async fn update_metadata(
        &self,
        id: &ObjectId,
        expected: &Metadata,
        metadata: &Metadata,
    ) -> Result<bool, BackendError> {
        let key = storage_key(id).into_bytes();
        // Cell timestamps follow the deadline, so the payload is rewritten with it.
        let Some(cells) = self.read_row(&key, latest()).await? else {
            return Ok(false);
        };
        let (_, payload) = decode(cells)?;
        let payload = payload.unwrap_or_default();
        self.check_and_mutate(
            key,
            metadata_is(expected),
            write_object(metadata, &payload),
            false,
        )
        .await
    }

    async fn sweep_expired(&self, now: SystemTime) -> Result<u64, BackendError> {
        let expired = || {
            chain(vec![
                filter(row_filter::Filter::FamilyNameRegexFilter(format!(
                    "^{FAMILY_EXPIRING}$"
                ))),
                columns("^m$"),
                latest(),
                filter(row_filter::Filter::TimestampRangeFilter(TimestampRange {
                    start_timestamp_micros: 0,
                    end_timestamp_micros: micros(now),
                })),
            ])
        };
        let request = ReadRowsRequest {
            table_name: self.table.clone(),
            filter: Some(chain(vec![
                expired(),
                filter(row_filter::Filter::StripValueTransformer(true)),
            ])),
            ..Default::default()
        };
        let rows = self
            .client
            .clone()
            .read_rows(request)
            .await
            .map_err(|err| self.rpc_error(err))?;
        let mut removed = 0;
        for (key, _) in rows {
            // Re-checked atomically: an overwrite since the scan keeps its row.
            if self
                .check_and_mutate(key, expired(), vec![delete_row()], false)
                .await?
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn compare_and_swap(
        &self,
        id: &ObjectId,
        expected: Option<&Metadata>,
        new: Option<(&Metadata, Bytes)>,
    ) -> Result<bool, BackendError> {
        let key = storage_key(id).into_bytes();
        let mutations = match new {
            Some((metadata, payload)) => write_object(metadata, &payload),
            None => vec![delete_row()],
        };
        match expected {
            Some(expected) => {
                self.check_and_mutate(key, metadata_is(expected), mutations, false)
                    .await
            }
            None => {
                let any = filter(row_filter::Filter::PassAllFilter(true));
                self.check_and_mutate(key, any, mutations, true).await
            }
        }
    }

    async fn probe(&self) -> Result<(), BackendError> {
        // A point read of a row that never exists: cheap, and it checks the table.
        let none = filter(row_filter::Filter::BlockAllFilter(true));
        self.read_row(b"\x00strata-probe", none).await.map(|_| ())
    }
}

/// The two table-admin calls `create_table` needs, over plain gRPC. The messages are
/// the subset of `google/bigtable/admin/v2` they use (field numbers as upstream).
mod admin {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct CreateTableRequest {
        #[prost(string, tag = "1")]
        parent: String,
        #[prost(string, tag = "2")]
        table_id: String,
        #[prost(message, optional, tag = "3")]
        table: Option<Table>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Table {
        #[prost(map = "string, message", tag = "3")]
        column_families: HashMap<String, ColumnFamily>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ColumnFamily {
        #[prost(message, optional, tag = "1")]
        gc_rule: Option<GcRule>,
    }

    /// `GcRule` with only its `max_age` member (oneof tag 2).
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct GcRule {
        #[prost(message, optional, tag = "2")]
        max_age: Option<ProtoDuration>,
    }

    /// `google.protobuf.Duration`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ProtoDuration {
        #[prost(int64, tag = "1")]
        seconds: i64,
        #[prost(int32, tag = "2")]
        nanos: i32,
    }

    /// Creates the table with families `fm` (kept) and `fe` (collected one second
    /// after the deadline in their timestamps); an existing table is fine.
    pub(super) async fn create_table(
        host: &str,
        project: &str,
        instance: &str,
        table: &str,
    ) -> Result<(), String> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{host}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(10))
            .timeout(RPC_TIMEOUT)
            .connect()
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|e| e.to_string())?;
        let families = HashMap::from([
            (FAMILY_MANUAL.to_owned(), ColumnFamily { gc_rule: None }),
            (
                FAMILY_EXPIRING.to_owned(),
                ColumnFamily {
                    gc_rule: Some(GcRule {
                        max_age: Some(ProtoDuration {
                            seconds: 1,
                            nanos: 0,
                        }),
                    }),
                },
            ),
        ]);
        let request = CreateTableRequest {
            parent: format!("projects/{project}/instances/{instance}"),
            table_id: table.to_owned(),
            table: Some(Table {
                column_families: families,
            }),
        };
        let path = http::uri::PathAndQuery::from_static(
            "/google.bigtable.admin.v2.BigtableTableAdmin/CreateTable",
        );
        let codec = tonic_prost::ProstCodec::<CreateTableRequest, Table>::default();
        match grpc.unary(tonic::Request::new(request), path, codec).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(()),
            Err(status) => Err(status.to_string()),
        }
    }
}
