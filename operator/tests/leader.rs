//! Leader election against the fake API server: the Lease is created, taken, and
//! released on shutdown, within the operator's RBAC rules.

mod common;

use std::time::Duration;

use common::FakeApi;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/strata-system/leases/strata-operator";

#[tokio::test]
async fn takes_the_lease_and_releases_it() {
    let (client, fake) = FakeApi::start();
    let mut election =
        strata_operator::leader::start(client, "strata-operator", "strata-system", "pod-a")
            .await
            .expect("election starts");
    tokio::time::timeout(Duration::from_secs(10), election.leading.wait_for(|l| *l))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no leadership within 10 s: {:#?}",
                fake.log().iter().take(8).collect::<Vec<_>>()
            )
        })
        .expect("election task alive");
    let lease = fake.get(LEASE).expect("lease stored");
    assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
    assert_eq!(fake.forbidden(), Vec::<String>::new());

    drop(election.leading);
    tokio::time::timeout(Duration::from_secs(10), election.task)
        .await
        .expect("released within 10 s")
        .expect("task joined")
        .expect("release succeeded");
    let lease = fake.get(LEASE).unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "lease still held: {lease}"
    );
}
