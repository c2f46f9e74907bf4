//! Lease-based leader election: one active operator replica at a time.
//!
//! Built on `kube-lease-manager` after comparing the maintained options: it tracks
//! kube 5 / k8s-openapi 0.29 (the versions this workspace pins), renews with
//! server-side apply (conflicts are detected by the API server, not by racing
//! updates) and tolerates clock skew via its grace period. `kube-leader-election`
//! still depends on kube 4 (a second kube in the build), and `kube-coordinate` pulls a
//! larger runtime for the same result.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Lease timing: a new leader takes over at most this many seconds after a crash.
pub const LEASE_DURATION_SECS: u64 = 15;
/// Renew this many seconds before expiry (also the tolerated clock skew).
pub const LEASE_GRACE_SECS: u64 = 5;

/// A running election: `leading` flips to true when this replica holds the Lease.
pub struct Election {
    /// Current leadership; dropping it releases the Lease.
    pub leading: watch::Receiver<bool>,
    /// The background renewal task.
    pub task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

/// Starts competing for Lease `name` in `namespace` as `identity`.
pub async fn start(
    client: Client,
    name: &str,
    namespace: &str,
    identity: &str,
) -> Result<Election, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_DURATION_SECS)
        .with_grace(LEASE_GRACE_SECS)
        .build()
        .await?;
    let (leading, task) = manager.watch().await;
    Ok(Election { leading, task })
}
