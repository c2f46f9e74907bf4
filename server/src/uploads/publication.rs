//! Which server publishes a resumable session that several see fully received at once:
//! a client that lost the answer to its last chunk retries it, or asks for the offset,
//! on another pod while the first is still publishing. Both would publish the same
//! bytes, but the later copy could land after a newer write of the key and undo it.
//!
//! On staging that other servers share, the server that creates the session's
//! `publishing` marker publishes; the others wait for its `done` marker and report the
//! session complete without publishing again. A marker is removed when its publication
//! fails, and taken over once older than [`TAKEOVER`] (its server died mid-way).

use std::io;
use std::time::{Duration, Instant, SystemTime};

use super::store::Staging;

/// The marker's name in a session directory.
const MARKER: &str = "publishing";
/// Age after which a marker counts as left by a dead server; longer than any
/// publication takes (5 GiB at 10 MB/s is under 9 minutes).
pub const TAKEOVER: Duration = Duration::from_secs(15 * 60);
/// How long a server waits for another's publication before answering busy.
pub const WAIT: Duration = Duration::from_secs(30);
/// Pause between looks at the markers while waiting.
const POLL: Duration = Duration::from_millis(200);

/// What a server that found a session fully received does.
#[derive(Debug)]
pub enum Turn {
    /// Publish it; the marker goes again when the [`Release`] is dropped unpublished.
    Publish(Release),
    /// Another server published it.
    Published,
    /// Another server is still publishing it after `wait`.
    Busy,
}

/// Removes the marker when dropped (a failed or panicked publication), unless
/// [`Release::published`] was called.
#[derive(Debug)]
pub struct Release {
    staging: Staging,
    marker: String,
    armed: bool,
}

impl Release {
    /// The session is published and marked done: the marker may stay until the
    /// session directory goes.
    pub fn published(mut self) {
        self.armed = false;
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (staging, marker) = (self.staging.clone(), std::mem::take(&mut self.marker));
        // Outside a runtime (never in the server) the marker is left to the takeover.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = staging.remove(&marker).await {
                    tracing::warn!(%err, marker, "cannot release a publication marker");
                }
            });
        }
    }
}

/// Decides who publishes the session in `dir`, waiting up to `wait` for another server.
pub async fn take_turn(staging: &Staging, dir: &str, wait: Duration) -> io::Result<Turn> {
    let marker = format!("{dir}/{MARKER}");
    let deadline = Instant::now() + wait;
    loop {
        let ours = uuid::Uuid::new_v4().as_bytes().to_vec();
        if staging.put_if_absent(&marker, ours.clone()).await? == ours {
            return Ok(Turn::Publish(Release {
                staging: staging.clone(),
                marker,
                armed: true,
            }));
        }
        if staging.read(&format!("{dir}/done")).await?.is_some() {
            return Ok(Turn::Published);
        }
        let age = staging
            .modified(&marker)
            .await?
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default());
        if age.is_some_and(|age| age > TAKEOVER) {
            staging.remove(&marker).await?;
            continue;
        }
        if Instant::now() >= deadline {
            return Ok(Turn::Busy);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn one_server_publishes_and_the_others_wait_for_it() {
        let staging = Staging::memory();
        let Turn::Publish(release) = take_turn(&staging, "s/1", SHORT).await.unwrap() else {
            panic!("the first server publishes");
        };
        assert!(matches!(
            take_turn(&staging, "s/1", SHORT).await.unwrap(),
            Turn::Busy
        ));
        staging.put_bytes("s/1/done", Vec::new()).await.unwrap();
        release.published();
        assert!(matches!(
            take_turn(&staging, "s/1", SHORT).await.unwrap(),
            Turn::Published
        ));
    }

    #[tokio::test]
    async fn a_failed_publication_lets_the_next_server_publish() {
        let staging = Staging::memory();
        let Turn::Publish(release) = take_turn(&staging, "s/2", SHORT).await.unwrap() else {
            panic!("the first server publishes");
        };
        drop(release);
        // The release runs in a task of its own; the next server waits for it.
        let turn = take_turn(&staging, "s/2", Duration::from_secs(10)).await;
        assert!(matches!(turn.unwrap(), Turn::Publish(_)));
    }

    #[tokio::test]
    async fn a_marker_left_by_a_dead_server_is_taken_over() {
        let staging = Staging::memory();
        let Staging::Memory(map) = &staging else {
            unreachable!()
        };
        let long_ago = SystemTime::now() - TAKEOVER - Duration::from_secs(1);
        map.lock()
            .unwrap()
            .insert("s/3/publishing".into(), (b"dead".to_vec(), long_ago));
        assert!(matches!(
            take_turn(&staging, "s/3", SHORT).await.unwrap(),
            Turn::Publish(_)
        ));
    }
}
