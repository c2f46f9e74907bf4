//! StatefulSet for filesystem storage on a PersistentVolumeClaim per pod.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodTemplateSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::pod::DATA_VOLUME;
use super::Context;
use crate::api::PersistenceSpec;

/// StatefulSet running `template` with a `data` claim per pod. Pods start in parallel:
/// servers do not depend on each other, so ordered start-up would only slow rollouts.
pub fn render(ctx: &Context<'_>, template: PodTemplateSpec, p: &PersistenceSpec) -> StatefulSet {
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(ctx.selector_labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: p.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), p.size.clone())])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };
    StatefulSet {
        metadata: ctx.meta(&ctx.name),
        spec: Some(StatefulSetSpec {
            replicas: Some(ctx.owner.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(ctx.selector_labels()),
                ..LabelSelector::default()
            },
            service_name: Some(ctx.name.clone()),
            pod_management_policy: Some("Parallel".into()),
            template,
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}
