//! End-to-end checks against a real cluster (kind, k3d or any cluster where the CRD can
//! be installed). Ignored by default, so a run without a cluster reports it as skipped,
//! never as passed; `scripts/test.sh` runs it (`--run-ignored only`) when `KUBECONFIG`
//! is set:
//!
//!     KUBECONFIG=~/.kube/config STRATA_E2E_IMAGE=ghcr.io/strata-dev/strata-server:0.1.0 \
//!       cargo nextest run -p strata-operator --test e2e --run-ignored only
//!
//! It installs/updates the CRD, creates a StorageService in a throw-away namespace,
//! reconciles it in-process until the servers are Ready, stores and reads an object with
//! the real PyPI `objectstore-client` through `kubectl port-forward`, then cleans up.
//!
//! The server image must be pullable by the cluster: set `STRATA_E2E_IMAGE`, e.g. the one
//! `scripts/build-images.sh` writes, loaded with `kind load image-archive` or
//! `k3d image import` (README, "For platform teams").

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::CustomResourceExt;
use strata_operator::api::{StorageBackend, StorageService, StorageServiceSpec};
use strata_operator::controller::{discover, reconcile, Context};
use strata_operator::metrics::Metrics;

/// Asked to run without a cluster: fail loudly rather than pass without checking.
fn require_cluster() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "the e2e suite needs a cluster: set KUBECONFIG (kind and k3d work)"
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --run-ignored only"]
async fn storage_service_reconciles_on_a_real_cluster() {
    require_cluster();
    let client = kube::Client::try_default()
        .await
        .expect("KUBECONFIG usable");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "storageservices.strata.dev",
        &PatchParams::apply("strata-operator-e2e").force(),
        &Patch::Apply(StorageService::crd()),
    )
    .await
    .expect("CRD applied");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ns_name = format!("strata-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(ns_name.clone());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");

    let services: Api<StorageService> = Api::namespaced(client.clone(), &ns_name);
    let mut spec = StorageServiceSpec::minimal();
    spec.storage.backend = StorageBackend::Memory;
    if let Ok(image) = std::env::var("STRATA_E2E_IMAGE") {
        spec.image = image;
    }
    let created = services
        .create(&PostParams::default(), &StorageService::new("e2e", spec))
        .await
        .expect("StorageService accepted by the CRD schema");

    let caps = discover(&client).await;
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::new()),
        caps,
        Some("e2e".into()),
    ));
    reconcile(Arc::new(created), ctx.clone())
        .await
        .expect("reconcile");

    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns_name)
        .get("e2e-config")
        .await
        .expect("ConfigMap created");
    assert!(cm.data.unwrap()["strata.yaml"].contains("memory"));
    Api::<Deployment>::namespaced(client.clone(), &ns_name)
        .get("e2e")
        .await
        .expect("Deployment created");
    let current = services.get("e2e").await.unwrap();
    let status = current.status.clone().expect("status written");
    assert_eq!(status.observed_generation, current.metadata.generation);
    assert!(status.condition("Ready").is_some());

    // A second reconcile of the unchanged object makes no write.
    let before = ctx.metrics.writes.with_label_values(&["apply"]).get();
    reconcile(Arc::new(current), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        ctx.metrics.writes.with_label_values(&["apply"]).get(),
        before
    );

    // Reconcile until the servers are Ready (the pods must pull and start).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let current = services.get("e2e").await.unwrap();
        reconcile(Arc::new(current), ctx.clone())
            .await
            .expect("reconcile");
        let current = services.get("e2e").await.unwrap();
        let ready = current
            .status
            .as_ref()
            .and_then(|s| s.condition("Ready"))
            .is_some_and(|c| c.status == "True");
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "StorageService not Ready within 5 minutes: {:?}",
            current.status
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    // The real Python client against the Service, through a port-forward.
    let mut forward = Command::new("kubectl")
        .args(["-n", &ns_name, "port-forward", "service/e2e", ":8888"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    let mut line = String::new();
    BufReader::new(forward.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "Forwarding from 127.0.0.1:PORT -> 8888"
    let local = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("unexpected port-forward output {line:?}"))
        .to_owned();
    let script = format!(
        "from objectstore_client import Client, Usecase\n\
         s = Client('http://{local}').session(Usecase('e2e'), org=1)\n\
         k = s.put(b'hello from e2e', key='greeting')\n\
         assert s.get(k).payload.read() == b'hello from e2e'\n\
         s.delete(k)\n\
         assert s.get(k) is None\n"
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(status.success(), "python client round trip failed");

    namespaces
        .delete(&ns_name, &DeleteParams::default())
        .await
        .expect("cleanup");
}
