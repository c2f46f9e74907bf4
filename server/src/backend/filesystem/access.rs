//! Errors about the storage root itself, phrased for whoever deployed the server.

use std::io;
use std::path::Path;

/// An error creating or locking the storage root, naming it. A root this process may not
/// write to (a volume owned by another user, a read-only mount) is a deployment mistake:
/// say so plainly, with the uid that needs access.
pub(super) fn root_error(root: &Path, err: io::Error) -> io::Error {
    let shown = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let kind = err.kind();
    if matches!(
        kind,
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    ) {
        io::Error::new(
            kind,
            format!(
                "storage path {} is not writable by this process{}: {err}; \
                 mount a writable volume there or make it owned by that user",
                shown.display(),
                process_uid()
                    .map(|uid| format!(" (uid {uid})"))
                    .unwrap_or_default()
            ),
        )
    } else {
        io::Error::new(
            kind,
            format!("cannot open storage path {}: {err}", shown.display()),
        )
    }
}

/// This process's uid, from the owner of `/proc/self` (no `unsafe` needed).
fn process_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_root_is_named_with_the_uid_and_what_to_do() {
        let err = root_error(
            Path::new("data"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let text = err.to_string();
        let absolute = std::env::current_dir().unwrap().join("data");
        assert!(
            text.starts_with(&format!(
                "storage path {} is not writable by this process",
                absolute.display()
            )),
            "{text}"
        );
        assert!(text.contains("(uid "), "{text}");
        assert!(text.contains("mount a writable volume"), "{text}");

        let err = root_error(
            Path::new("/srv/x"),
            io::Error::from(io::ErrorKind::ReadOnlyFilesystem),
        );
        assert!(err.to_string().contains("/srv/x is not writable"), "{err}");
    }

    #[test]
    fn other_failures_name_the_root_without_blaming_permissions() {
        let err = root_error(
            Path::new("/srv/x"),
            io::Error::from(io::ErrorKind::StorageFull),
        );
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        let text = err.to_string();
        assert!(
            text.starts_with("cannot open storage path /srv/x: "),
            "{text}"
        );
        assert!(!text.contains("not writable"), "{text}");
    }
}
