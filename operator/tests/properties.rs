//! Property tests over generated specs: ownership and labels on every child, the
//! config hash tracks exactly the config, and the ConfigMap is what the server parses.

mod common;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use proptest::prelude::*;
use strata_operator::api::*;
use strata_operator::render::config::{server_config, CONFIG_KEY};
use strata_operator::render::{render, Capabilities, Workload, CONFIG_HASH_ANNOTATION};
use strata_types::config::Config;

fn limits() -> impl Strategy<Value = Option<LimitsSpec>> {
    prop::option::of(
        (
            prop::option::of(1u32..5000),
            prop::option::of(0u32..1000),
            prop::option::of(0u32..100),
            1u64..5000,
            prop::option::of(1u8..=100),
            prop::option::of(1u64..1_000_000),
            prop::option::of(1u64..3600),
            prop::option::of(8192u32..1_000_000),
        )
            .prop_map(
                |(
                    max_requests,
                    max_concurrency,
                    queue_depth,
                    timeout_ms,
                    bulk,
                    age,
                    secs,
                    head,
                )| {
                    LimitsSpec {
                        max_requests,
                        max_concurrency,
                        queue_depth,
                        queue_timeout: queue_depth.map(|_| format!("{timeout_ms}ms")),
                        bulk_percent: bulk,
                        upload_max_age: age.map(|s| format!("{s}s")),
                        header_read_timeout: secs.map(|s| format!("{s}s")),
                        body_idle_timeout: secs.map(|s| format!("{}s", s * 2)),
                        request_timeout: secs.map(|s| format!("{}m", s)),
                        max_header_bytes: head,
                    }
                },
            ),
    )
}

fn faults() -> impl Strategy<Value = Option<FaultsSpec>> {
    prop::option::of(
        (
            prop::option::of("[a-z]{1,6}/"),
            prop::option::of(("[a-z]{1,6}/", 1u64..10_000)),
        )
            .prop_map(|(panic, delay)| FaultsSpec {
                panic_key_prefix: panic,
                delay_key_prefix: delay.as_ref().map(|(p, _)| p.clone()),
                delay: delay.map(|(_, ms)| format!("{ms}ms")),
            }),
    )
}

fn storage() -> impl Strategy<Value = StorageSpec> {
    prop_oneof![
        Just(StorageSpec {
            backend: StorageBackend::Memory,
            ..StorageSpec::default()
        }),
        (
            prop::sample::select(vec![
                StorageBackend::Bigtable,
                StorageBackend::S3compatible,
                StorageBackend::Tiered
            ]),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(backend, emulator, secrets)| StorageSpec {
                backend,
                bigtable: (backend != StorageBackend::S3compatible).then(|| BigtableSpec {
                    endpoint: emulator.then(|| "bigtable:8086".into()),
                    project_id: "p".into(),
                    instance_name: "i".into(),
                    table_name: "objects".into(),
                    connections: None,
                    create_table: emulator,
                    credentials_secret: secrets.then(|| GoogleCredentialsSecret {
                        name: "gcp".into(),
                        key: "key.json".into(),
                    }),
                }),
                s3compatible: (backend != StorageBackend::Bigtable).then(|| S3CompatibleSpec {
                    endpoint: "http://minio:9000".into(),
                    bucket: "strata".into(),
                    region: None,
                    path_style: Some(emulator),
                    credentials_secret: secrets.then(|| AwsCredentialsSecret {
                        name: "s3".into(),
                        access_key_id_key: "id".into(),
                        secret_access_key_key: "secret".into(),
                    }),
                }),
                ..StorageSpec::default()
            }),
        prop::option::of((1u32..500, prop::option::of("[a-z]{3,8}"))).prop_map(|p| StorageSpec {
            backend: StorageBackend::Filesystem,
            filesystem: Some(FilesystemSpec {
                persistence: p.map(|(gi, class)| PersistenceSpec {
                    size: Quantity(format!("{gi}Gi")),
                    storage_class_name: class,
                }),
            }),
            ..StorageSpec::default()
        }),
    ]
}

prop_compose! {
    fn spec()(
        replicas in 0i32..8,
        storage in storage(),
        limits in limits(),
        faults in faults(),
        level in prop::sample::select(vec!["info", "debug", "warn,strata_server=trace"]),
        json in any::<bool>(),
        autoscale in prop::option::of((1i32..4, 0i32..6, prop::option::of(10i32..90), prop::option::of(10i32..90))),
        pdb_max in prop::option::of(0i32..3),
        monitoring in any::<bool>(),
        paused in any::<bool>(),
        tag in "[0-9]\\.[0-9]{1,2}\\.[0-9]",
    ) -> StorageServiceSpec {
        let mut spec = StorageServiceSpec::minimal();
        spec.replicas = replicas;
        spec.image = format!("example.com/strata-server:{tag}");
        spec.storage = storage;
        spec.limits = limits;
        spec.faults = faults;
        spec.logging = Some(LoggingSpec {
            level: Some(level.to_owned()),
            format: Some(if json { LogFormatSpec::Json } else { LogFormatSpec::Text }),
        });
        spec.autoscaling = autoscale.map(|(min, extra, cpu, inflight)| AutoscalingSpec {
            min_replicas: min,
            max_replicas: min + extra,
            target_cpu_utilization_percentage: cpu.or(if inflight.is_none() { Some(70) } else { None }),
            target_in_flight_percentage: inflight,
        });
        if !spec.storage.backend.is_shared() {
            // single-node backends run at most one pod (validate refuses more)
            spec.replicas = spec.replicas.min(1);
            spec.autoscaling = None;
        }
        spec.pod_disruption_budget = pdb_max.map(|m| PodDisruptionBudgetSpec {
            enabled: true,
            min_available: None,
            max_unavailable: Some(m),
        });
        if monitoring {
            spec.monitoring = Some(MonitoringSpec {
                service_monitor: Some(ServiceMonitorSpec { enabled: true, ..Default::default() }),
                prometheus_rule: Some(PrometheusRuleSpec { enabled: true, ..Default::default() }),
            });
        }
        spec.paused = paused;
        spec
    }
}

fn object(name: &str, spec: StorageServiceSpec) -> StorageService {
    let mut obj = StorageService::new(name, spec);
    obj.metadata.namespace = Some("ns".into());
    common::stored(&mut obj);
    obj
}

const RECOMMENDED: [&str; 5] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_child_is_owned_and_labelled(name in "[a-z][a-z0-9]{0,15}", spec in spec()) {
        let obj = object(&name, spec);
        let rendered = render(&obj, Capabilities { monitoring: true }).unwrap();
        for meta in rendered.metas() {
            let owners = meta.owner_references.as_ref().unwrap();
            prop_assert_eq!(owners.len(), 1);
            prop_assert_eq!(&owners[0].uid, obj.metadata.uid.as_ref().unwrap());
            prop_assert_eq!(owners[0].controller, Some(true));
            prop_assert_eq!(&owners[0].kind, "StorageService");
            let labels = meta.labels.as_ref().unwrap();
            for key in RECOMMENDED {
                prop_assert!(labels.contains_key(key), "{} missing on {:?}", key, meta.name);
            }
            prop_assert_eq!(labels.get("app.kubernetes.io/instance"), Some(&name));
            prop_assert_eq!(meta.namespace.as_deref(), Some("ns"));
        }
        let template = match &rendered.workload {
            Workload::Deployment(d) => d.spec.as_ref().unwrap().template.clone(),
            Workload::StatefulSet(s) => s.spec.as_ref().unwrap().template.clone(),
        };
        let labels = template.metadata.unwrap().labels.unwrap();
        for key in RECOMMENDED {
            prop_assert!(labels.contains_key(key));
        }
    }

    #[test]
    fn config_map_parses_as_server_config(spec in spec()) {
        let obj = object("svc", spec.clone());
        let rendered = render(&obj, Capabilities::default()).unwrap();
        let yaml = &rendered.config_map.data.as_ref().unwrap()[CONFIG_KEY];
        let parsed = Config::from_yaml_str(yaml).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed, server_config(&spec).unwrap());
    }

    #[test]
    fn config_hash_changes_iff_config_changes(a in spec(), b in spec()) {
        let ra = render(&object("svc", a.clone()), Capabilities::default()).unwrap();
        let rb = render(&object("svc", b.clone()), Capabilities::default()).unwrap();
        let same_config = server_config(&a).unwrap() == server_config(&b).unwrap();
        prop_assert_eq!(ra.config_hash == rb.config_hash, same_config);
        for r in [&ra, &rb] {
            let template = match &r.workload {
                Workload::Deployment(d) => d.spec.as_ref().unwrap().template.clone(),
                Workload::StatefulSet(s) => s.spec.as_ref().unwrap().template.clone(),
            };
            let annotations = template.metadata.unwrap().annotations.unwrap();
            prop_assert_eq!(&annotations[CONFIG_HASH_ANNOTATION], &r.config_hash);
        }
    }

    #[test]
    fn non_config_fields_keep_the_hash(spec in spec(), replicas in 0i32..50, paused in any::<bool>()) {
        let before = render(&object("svc", spec.clone()), Capabilities::default()).unwrap();
        let shared = spec.storage.backend.is_shared();
        let mut changed = spec;
        changed.replicas = if shared { replicas } else { replicas.min(1) };
        changed.paused = paused;
        changed.image = "example.com/other:9.9.9".into();
        changed.autoscaling = None;
        changed.pod_disruption_budget = None;
        let after = render(&object("svc", changed), Capabilities::default()).unwrap();
        prop_assert_eq!(before.config_hash, after.config_hash);
    }
}
