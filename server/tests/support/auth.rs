//! Access-control test support shared by `auth.rs` and `auth_uploads.rs`: Ed25519 key
//! pairs made at test time with `openssl genpkey`, JWTs signed with them, and a server
//! harness with access control enforced.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signer, SigningKey};
use objectstore_client::{Client, SecretKey, TokenGenerator};
use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_server::app::{self, RunningServer};
use strata_server::auth::{AuthConfig, KeyConfig, Permission as P};
use strata_server::config::{Config, StorageConfig};
use tempfile::TempDir;

pub const USECASE: &str = "attachments";

/// One Ed25519 key pair made by openssl: the private PEM and the public key file.
pub struct KeyPair {
    pub private_pem: String,
    pub public_file: PathBuf,
}

impl KeyPair {
    pub fn generate(dir: &Path, name: &str) -> Self {
        let private = dir.join(format!("{name}.pem"));
        let public_file = dir.join(format!("{name}.pub.pem"));
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        run(&[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            private.to_str().unwrap(),
        ]);
        run(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public_file.to_str().unwrap(),
        ]);
        Self {
            private_pem: std::fs::read_to_string(&private).unwrap(),
            public_file,
        }
    }

    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_pkcs8_pem(&self.private_pem).expect("openssl PKCS#8 key")
    }

    /// Signs `header.claims` as a compact JWS (any header, any claims).
    pub fn jwt(&self, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.signing_key().sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn claims(usecase: &str, org: &str, perms: &[&str], exp: i64) -> Value {
    json!({"exp": exp, "permissions": perms, "res": {"os:usecase": usecase, "org": org}})
}

/// The keys every test server knows: `full` (all permissions, two versions: v2 then
/// v1), `readonly` (max object.read) and `none` (no `max_permissions`).
pub struct Keys {
    pub dir: TempDir,
    pub full_v1: KeyPair,
    pub full_v2: KeyPair,
    pub readonly: KeyPair,
    pub none: KeyPair,
    pub stranger: KeyPair,
}

impl Keys {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let full_v1 = KeyPair::generate(dir.path(), "full-v1");
        let full_v2 = KeyPair::generate(dir.path(), "full-v2");
        let readonly = KeyPair::generate(dir.path(), "readonly");
        let none = KeyPair::generate(dir.path(), "none");
        let stranger = KeyPair::generate(dir.path(), "stranger");
        Self {
            dir,
            full_v1,
            full_v2,
            readonly,
            none,
            stranger,
        }
    }

    pub fn config(&self, enforce: bool) -> AuthConfig {
        let key = |files: Vec<PathBuf>, max: Vec<P>| KeyConfig {
            key_files: files,
            max_permissions: max,
        };
        AuthConfig {
            enforce,
            keys: [
                (
                    "full".to_owned(),
                    key(
                        vec![
                            self.full_v2.public_file.clone(),
                            self.full_v1.public_file.clone(),
                        ],
                        vec![P::Read, P::Write, P::Delete],
                    ),
                ),
                (
                    "readonly".to_owned(),
                    key(vec![self.readonly.public_file.clone()], vec![P::Read]),
                ),
                (
                    "none".to_owned(),
                    key(vec![self.none.public_file.clone()], vec![]),
                ),
            ]
            .into(),
        }
    }

    pub fn token(&self, kid: &str, claims: &Value) -> String {
        let pair = match kid {
            "full" => &self.full_v2,
            "readonly" => &self.readonly,
            "none" => &self.none,
            _ => &self.stranger,
        };
        pair.jwt(&json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}), claims)
    }

    pub fn full_token(&self, org: &str) -> String {
        self.token(
            "full",
            &claims(
                USECASE,
                org,
                &["object.read", "object.write", "object.delete"],
                now() + 60,
            ),
        )
    }
}

pub struct Harness {
    pub server: RunningServer,
    pub http: reqwest::Client,
    pub keys: Keys,
    pub _dir: TempDir,
}

impl Harness {
    pub async fn start(adjust: impl FnOnce(&mut Config, &Keys)) -> Self {
        let keys = Keys::new();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            auth: keys.config(true),
            ..Config::default()
        };
        config.http.addr = "127.0.0.1:0".parse().unwrap();
        config.http.drain_file = dir.path().join("strata.down");
        config.storage = StorageConfig::Filesystem {
            path: dir.path().join("data"),
        };
        adjust(&mut config, &keys);
        let server = app::start(config).await.expect("server starts");
        Self {
            server,
            http: reqwest::Client::new(),
            keys,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr())
    }

    pub fn object_path(org: &str, key: &str) -> String {
        format!("/v1/objects/{USECASE}/org={org}/{key}")
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: &'static str,
    ) -> (StatusCode, String) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.header("x-os-auth", format!("Bearer {t}"));
        }
        let res = req.body(body).send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    }

    /// Reads `key` back with a valid token: its body, or `None` when absent.
    pub async fn read_back(&self, org: &str, key: &str) -> Option<String> {
        let token = self.keys.full_token(org);
        let (status, body) = self
            .send(
                reqwest::Method::GET,
                &Self::object_path(org, key),
                Some(&token),
                "",
            )
            .await;
        match status {
            StatusCode::OK => Some(body),
            StatusCode::NOT_FOUND => None,
            other => panic!("read-back of {key}: {other} {body}"),
        }
    }

    pub fn client(&self, token: impl objectstore_client::IntoTokenProvider) -> Client {
        Client::builder(format!("http://{}", self.server.addr()))
            .token(token)
            .build()
            .unwrap()
    }

    pub fn generator(&self, kid: &str, pair: &KeyPair) -> TokenGenerator {
        TokenGenerator::new(SecretKey {
            kid: kid.to_owned(),
            secret_key: pair.private_pem.clone(),
        })
        .unwrap()
    }

    pub fn metric(&self, needle: &str) -> u64 {
        let text = self.server.metrics().encode();
        text.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {needle} missing"))
    }
}
