//! On-disk format v1 of what the filesystem backend stores about an object: the
//! canonical bytes of its id and the storage form of its metadata.
//!
//! Why dedicated types: what is on disk must not change when a domain type does.
//! Renaming a field of [`Metadata`] or [`ObjectId`] would otherwise change the bytes of
//! every record and, through the id's hash, the name of every object file, orphaning
//! them. The structs here change only with [`FORMAT_VERSION`], and the id's bytes are
//! length-prefixed fields, never a serializer's output.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::object::metadata::Compression;
use crate::object::{ExpirationPolicy, Metadata, ObjectId};

/// The on-disk format this build reads and writes: in `<root>/FORMAT`, in every log
/// record and in every object file's header.
pub(super) const FORMAT_VERSION: u8 = 1;

/// The canonical bytes of an object id, hashed for its digest and stored in records and
/// object-file headers:
///
/// ```text
/// len u32 | usecase | scope count u32 | (len u32 | name | len u32 | value)* | len u32 | key
/// ```
pub(super) fn encode_id(id: &ObjectId) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        16 + id.usecase.len() + id.key.len() + 8 * id.scopes.0.len() + 32 * id.scopes.0.len(),
    );
    let field = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    field(&mut out, id.usecase.as_bytes());
    out.extend_from_slice(&(id.scopes.0.len() as u32).to_le_bytes());
    for scope in &id.scopes.0 {
        field(&mut out, scope.name.as_bytes());
        field(&mut out, scope.value.as_bytes());
    }
    field(&mut out, id.key.as_bytes());
    out
}

/// Metadata as stored (JSON of this struct). `size` is not stored: the payload says it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredMetadata {
    content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    compression: Option<StoredCompression>,
    expiration: StoredExpiration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time_created: Option<StoredTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time_expires: Option<StoredTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    custom: BTreeMap<String, String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredCompression {
    Zstd,
    Gzip,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "policy")]
enum StoredExpiration {
    Manual,
    Ttl { secs: u64, nanos: u32 },
    Tti { secs: u64, nanos: u32 },
}

/// A point in time as seconds and nanoseconds since the Unix epoch.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredTime {
    secs: u64,
    nanos: u32,
}

impl StoredTime {
    fn from_time(time: SystemTime) -> Self {
        let since = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            secs: since.as_secs(),
            nanos: since.subsec_nanos(),
        }
    }

    fn to_time(&self) -> Result<SystemTime, String> {
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::new(self.secs, self.nanos))
            .ok_or_else(|| format!("time {}s out of range", self.secs))
    }
}

/// The stored bytes of `metadata`.
pub(super) fn encode_metadata(metadata: &Metadata) -> Vec<u8> {
    let duration = |d: Duration| (d.as_secs(), d.subsec_nanos());
    let stored = StoredMetadata {
        content_type: metadata.content_type.clone(),
        compression: metadata.compression.map(|c| match c {
            Compression::Zstd => StoredCompression::Zstd,
            Compression::Gzip => StoredCompression::Gzip,
        }),
        expiration: match metadata.expiration {
            ExpirationPolicy::Manual => StoredExpiration::Manual,
            ExpirationPolicy::TimeToLive(d) => {
                let (secs, nanos) = duration(d);
                StoredExpiration::Ttl { secs, nanos }
            }
            ExpirationPolicy::TimeToIdle(d) => {
                let (secs, nanos) = duration(d);
                StoredExpiration::Tti { secs, nanos }
            }
        },
        time_created: metadata.time_created.map(StoredTime::from_time),
        time_expires: metadata.time_expires.map(StoredTime::from_time),
        origin: metadata.origin.clone(),
        filename: metadata.filename.clone(),
        custom: metadata.custom.clone(),
    };
    serde_json::to_vec(&stored).expect("stored metadata always serializes")
}

/// Metadata from its stored bytes (`size` unset).
pub(super) fn decode_metadata(bytes: &[u8]) -> Result<Metadata, String> {
    let stored: StoredMetadata = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(Metadata {
        content_type: stored.content_type,
        compression: stored.compression.map(|c| match c {
            StoredCompression::Zstd => Compression::Zstd,
            StoredCompression::Gzip => Compression::Gzip,
        }),
        expiration: match stored.expiration {
            StoredExpiration::Manual => ExpirationPolicy::Manual,
            StoredExpiration::Ttl { secs, nanos } => {
                ExpirationPolicy::TimeToLive(Duration::new(secs, nanos))
            }
            StoredExpiration::Tti { secs, nanos } => {
                ExpirationPolicy::TimeToIdle(Duration::new(secs, nanos))
            }
        },
        time_created: stored.time_created.map(|t| t.to_time()).transpose()?,
        time_expires: stored.time_expires.map(|t| t.to_time()).transpose()?,
        origin: stored.origin,
        filename: stored.filename,
        custom: stored.custom,
        size: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{Scope, Scopes};

    #[test]
    fn id_bytes_are_length_prefixed_fields() {
        let id = ObjectId::new("uc", Scopes(vec![Scope::new("org", "1").unwrap()]), "a/b").unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(b"uc");
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(&3u32.to_le_bytes());
        want.extend_from_slice(b"org");
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(b"1");
        want.extend_from_slice(&3u32.to_le_bytes());
        want.extend_from_slice(b"a/b");
        assert_eq!(encode_id(&id), want);
    }

    #[test]
    fn ids_that_concatenate_alike_encode_differently() {
        let a = ObjectId::new("uc", Scopes::default(), "ab").unwrap();
        let b = ObjectId::new("uca", Scopes::default(), "b").unwrap();
        assert_ne!(encode_id(&a), encode_id(&b));
    }

    #[test]
    fn metadata_round_trips_and_its_stored_form_is_pinned() {
        let mut custom = BTreeMap::new();
        custom.insert("team".to_owned(), "storage ☃".to_owned());
        let metadata = Metadata {
            content_type: "text/plain".to_owned(),
            compression: Some(Compression::Zstd),
            expiration: ExpirationPolicy::TimeToIdle(Duration::from_secs(60)),
            time_created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            time_expires: Some(SystemTime::UNIX_EPOCH + Duration::new(1_800_000_060, 5)),
            origin: Some("10.0.0.1".to_owned()),
            filename: Some("f.txt".to_owned()),
            custom,
            size: Some(99),
        };
        let bytes = encode_metadata(&metadata);
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"content_type":"text/plain","compression":"zstd","expiration":{"policy":"tti","secs":60,"nanos":0},"time_created":{"secs":1800000000,"nanos":0},"time_expires":{"secs":1800000060,"nanos":5},"origin":"10.0.0.1","filename":"f.txt","custom":{"team":"storage ☃"}}"#
        );
        let decoded = decode_metadata(&bytes).unwrap();
        assert_eq!(
            decoded,
            Metadata {
                size: None,
                ..metadata
            }
        );
        let minimal = encode_metadata(&Metadata::default());
        assert_eq!(
            std::str::from_utf8(&minimal).unwrap(),
            r#"{"content_type":"application/octet-stream","expiration":{"policy":"manual"}}"#
        );
        assert!(decode_metadata(b"{\"content_type\":\"x\",\"renamed\":1}").is_err());
    }
}
