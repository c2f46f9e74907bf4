//! Uploads that span several requests: multipart uploads (api §2.7) and resumable
//! sessions (api-newest §2.9). Both stage bytes apart from the objects and publish them
//! through the backend's ordinary streaming `put` once complete, so every backend that
//! offers staging supports them the same way. Two backends do better: a finished
//! resumable session goes through `Backend::put_staged`, which lets the filesystem
//! backend adopt the staged file instead of copying it, and multipart parts that S3 takes
//! stream straight into its own multipart upload (`Backend::native_multipart`).

pub mod assembly;
pub mod bucket;
pub mod multipart;
pub mod publication;
pub mod resumable;
pub mod staged;
pub mod store;

pub use staged::StagedUpload;
pub use store::Staging;
