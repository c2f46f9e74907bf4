//! ConfigMap holding the server YAML.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::config::CONFIG_KEY;
use super::{config_map_name, Context};

/// The ConfigMap mounted at `/etc/strata`; `yaml` comes from `Config::to_yaml`.
pub fn render(ctx: &Context<'_>, yaml: String) -> ConfigMap {
    ConfigMap {
        metadata: ctx.meta(&config_map_name(&ctx.name)),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), yaml)])),
        ..ConfigMap::default()
    }
}
