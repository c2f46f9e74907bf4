//! What an object is: its address (usecase, scopes, key), its metadata, and expiry.
//!
//! Pure types and parsing; no I/O. The HTTP layer parses requests into these and the
//! backends persist them.

pub mod content_disposition;
pub mod expiration;
pub mod id;
mod media_type;
pub mod metadata;

pub use expiration::ExpirationPolicy;
pub use id::{ObjectId, Scope, Scopes};
pub use metadata::{Compression, Metadata};
