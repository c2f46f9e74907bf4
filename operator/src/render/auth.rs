//! Access control in the rendered children: each key's Secret mounted read-only below
//! [`AUTH_DIR`], and the server's `auth` section pointing at those files. Only paths
//! and Secret names are rendered; the key material stays in the Secrets.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{KeyToPath, SecretVolumeSource, Volume, VolumeMount};
use strata_types::access::{AuthConfig, KeyConfig};

use crate::api::StorageServiceSpec;

/// Directory below which key `<kid>` is mounted as `<kid>/<file>`.
pub const AUTH_DIR: &str = "/var/run/secrets/strata/auth";
/// World-readable files: they are public keys, and the mount itself is read-only.
const KEY_FILE_MODE: i32 = 0o444;

/// Path of one key file inside the server container.
pub fn key_path(kid: &str, file: &str) -> PathBuf {
    PathBuf::from(format!("{AUTH_DIR}/{kid}/{file}"))
}

/// The server's `auth` section: `enforce` as written, each key's files as mount paths.
/// A spec without `auth` (refused by validation before this runs) renders as off.
pub fn server_auth(spec: &StorageServiceSpec) -> AuthConfig {
    let Some(auth) = &spec.auth else {
        return AuthConfig::disabled();
    };
    AuthConfig {
        enforce: auth.enforce,
        keys: auth
            .keys
            .iter()
            .map(|(kid, key)| {
                let files = key.files().iter().map(|f| key_path(kid, f)).collect();
                (
                    kid.clone(),
                    KeyConfig {
                        key_files: files,
                        max_permissions: key.max_permissions.clone(),
                    },
                )
            })
            .collect(),
    }
}

/// Secrets the pods need for verification keys, sorted and without duplicates.
pub fn secret_names(spec: &StorageServiceSpec) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for key in spec.auth.iter().flat_map(|a| a.keys.values()) {
        match out.iter_mut().find(|(name, _)| *name == key.secret_name) {
            Some((_, files)) => {
                for f in key.files() {
                    if !files.contains(&f) {
                        files.push(f);
                    }
                }
            }
            None => out.push((key.secret_name.clone(), key.files())),
        }
    }
    out.sort();
    out
}

/// One read-only Secret volume and mount per key id (volume names by position, since
/// key ids need not be DNS labels).
pub fn volumes(spec: &StorageServiceSpec) -> Vec<(Volume, VolumeMount)> {
    spec.auth
        .iter()
        .flat_map(|a| a.keys.iter())
        .enumerate()
        .map(|(i, (kid, key))| {
            let name = format!("auth-key-{i}");
            let volume = Volume {
                name: name.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(key.secret_name.clone()),
                    items: Some(
                        key.files()
                            .into_iter()
                            .map(|f| KeyToPath {
                                key: f.clone(),
                                path: f,
                                ..KeyToPath::default()
                            })
                            .collect(),
                    ),
                    default_mode: Some(KEY_FILE_MODE),
                    optional: Some(false),
                }),
                ..Volume::default()
            };
            let mount = VolumeMount {
                name,
                mount_path: format!("{AUTH_DIR}/{kid}"),
                read_only: Some(true),
                ..VolumeMount::default()
            };
            (volume, mount)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StorageServiceSpec {
        serde_json::from_value(serde_json::json!({"auth": {"keys": {
            "relay": {"secretName": "relay-keys", "keyFiles": ["v2.pem", "v1.pem"],
                      "maxPermissions": ["object.read", "object.write"]},
            "admin": {"secretName": "relay-keys", "keyFiles": ["admin.pem"]},
        }}}))
        .unwrap()
    }

    #[test]
    fn keys_point_at_their_mounts() {
        let auth = server_auth(&spec());
        assert!(auth.enforce);
        assert_eq!(
            auth.keys["relay"].key_files,
            [
                PathBuf::from("/var/run/secrets/strata/auth/relay/v2.pem"),
                PathBuf::from("/var/run/secrets/strata/auth/relay/v1.pem")
            ]
        );
        assert!(auth.keys["admin"].max_permissions.is_empty());
    }

    #[test]
    fn one_read_only_volume_per_key() {
        let vols = volumes(&spec());
        assert_eq!(vols.len(), 2);
        let (v, m) = &vols[1];
        assert_eq!(m.mount_path, "/var/run/secrets/strata/auth/relay");
        assert_eq!(m.read_only, Some(true));
        let secret = v.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("relay-keys"));
        let keys: Vec<_> = secret
            .items
            .iter()
            .flatten()
            .map(|i| i.key.as_str())
            .collect();
        assert_eq!(keys, ["v2.pem", "v1.pem"]);
        assert_eq!(
            secret_names(&spec()),
            [(
                "relay-keys".to_owned(),
                vec![
                    "admin.pem".to_owned(),
                    "v2.pem".to_owned(),
                    "v1.pem".to_owned()
                ]
            )]
        );
    }
}
