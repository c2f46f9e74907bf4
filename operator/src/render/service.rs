//! ClusterIP Service: the stable endpoint clients and Prometheus use.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::HTTP_PORT;
use super::Context;

/// Name of the HTTP port on the Service and the container.
pub const PORT_NAME: &str = "http";

/// Service selecting the server pods on the `http` port.
pub fn render(ctx: &Context<'_>) -> Service {
    Service {
        metadata: ctx.meta(&ctx.name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(ctx.selector_labels()),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.into()),
                port: i32::from(HTTP_PORT),
                target_port: Some(IntOrString::String(PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
