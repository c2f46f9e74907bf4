//! `<root>/FORMAT`: which on-disk format a storage root holds, checked before anything
//! in it is read.
//!
//! Why: a server must never misread (or, worse, "repair") data written in a layout it
//! does not know. A root of a newer format is refused; so is data from before format
//! versions existed (see `docs/storage-format.md` for why it is refused rather than
//! converted, and what to do instead). A fresh root is stamped before its first write.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;

use super::codec::FORMAT_VERSION;
use super::files;
use crate::backend::{BackendError, IoContext as _};

/// The file's name under the root.
pub(super) const FILE: &str = "FORMAT";
const PREFIX: &str = "strata-filesystem-format ";

/// The file's text for `version`.
fn contents(version: u32) -> String {
    format!("{PREFIX}{version}\n")
}

/// The version a FORMAT file's text states.
fn parse(text: &str) -> Option<u32> {
    text.strip_prefix(PREFIX)?.trim_end().parse().ok()
}

/// Accepts a root of this build's format, stamps a fresh one, refuses everything else
/// with a message saying what to do.
pub(super) fn check_or_init(root: &Path) -> Result<(), BackendError> {
    let path = root.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match parse(&text) {
            Some(version) if version == u32::from(FORMAT_VERSION) => Ok(()),
            Some(version) if version > u32::from(FORMAT_VERSION) => {
                Err(BackendError::Config(format!(
                    "storage path {} holds on-disk format v{version}, newer than v{FORMAT_VERSION}, \
                     the newest this strata-server reads; run the release that wrote it \
                     (downgrades are not supported, see docs/storage-format.md)",
                    root.display()
                )))
            }
            _ => Err(BackendError::Corrupt(format!(
                "{} does not name an on-disk format: {:?}",
                path.display(),
                text.chars().take(80).collect::<String>()
            ))),
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            if holds_pre_v1_data(root).at("scan storage path", root)? {
                return Err(BackendError::Config(format!(
                    "storage path {} holds data in the layout from before on-disk format \
                     versions (no {FILE} file); this strata-server reads format \
                     v{FORMAT_VERSION} only and does not convert it in place. Copy the \
                     objects to a server on an empty path with the release that wrote them, \
                     or start this one on an empty path; see docs/storage-format.md",
                    root.display()
                )));
            }
            stamp(root).at("write format file under", root)
        }
        Err(err) => Err(BackendError::IoAt {
            op: "read format file",
            path,
            source: err,
        }),
    }
}

/// Whether `root` has log segments with records or object files (data written before
/// FORMAT existed).
fn holds_pre_v1_data(root: &Path) -> io::Result<bool> {
    let log = root.join("log");
    if log.is_dir() {
        for entry in std::fs::read_dir(&log)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().ends_with(".seg") && entry.metadata()?.len() > 0
            {
                return Ok(true);
            }
        }
    }
    let objects = root.join("objects");
    if objects.is_dir() {
        for shard in std::fs::read_dir(&objects)? {
            let shard = shard?.path();
            if shard.is_dir() && std::fs::read_dir(&shard)?.next().is_some() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Writes FORMAT durably (temp file, fsync, rename, directory fsync).
fn stamp(root: &Path) -> io::Result<()> {
    let temp = root.join(format!("{FILE}.tmp"));
    let mut file = File::create(&temp)?;
    file.write_all(contents(u32::from(FORMAT_VERSION)).as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, root.join(FILE))?;
    files::fsync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_file_round_trips() {
        assert_eq!(contents(1), "strata-filesystem-format 1\n");
        assert_eq!(parse(&contents(7)), Some(7));
        assert_eq!(parse("strata-filesystem-format x"), None);
        assert_eq!(parse("something else 1"), None);
    }

    #[test]
    fn a_fresh_root_is_stamped_and_then_accepted() {
        let dir = tempfile::tempdir().unwrap();
        check_or_init(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE)).unwrap(),
            "strata-filesystem-format 1\n"
        );
        check_or_init(dir.path()).unwrap();
    }

    #[test]
    fn a_newer_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), contents(2)).unwrap();
        let err = check_or_init(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("holds on-disk format v2, newer than v1"),
            "{err}"
        );
        assert!(err.contains("run the release that wrote it"), "{err}");
    }

    #[test]
    fn a_garbled_format_file_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "hello").unwrap();
        let err = check_or_init(dir.path()).unwrap_err();
        assert!(matches!(err, BackendError::Corrupt(_)), "{err}");
    }

    #[test]
    fn an_empty_layout_without_a_format_file_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("objects/ab")).unwrap();
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        std::fs::write(dir.path().join("log/0000000000000001.seg"), b"").unwrap();
        check_or_init(dir.path()).unwrap();
        assert!(dir.path().join(FILE).exists());
    }
}
