//! `strata-operator render`: the children for a StorageService read from a file, for
//! offline review (like `helm template`), with no cluster involved.

use super::{render, Capabilities, RenderError};
use crate::api::StorageService;

/// Placeholder uid for objects not yet stored (the owner reference needs one).
pub const OFFLINE_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Parses one StorageService YAML and renders its children as a multi-document YAML
/// stream; errors are one line each, naming the field (`spec.replicas: ...`).
pub fn render_yaml(text: &str, caps: Capabilities) -> Result<String, Vec<String>> {
    let mut obj: StorageService =
        serde_yaml::from_str(text).map_err(|e| vec![format!("not a StorageService: {e}")])?;
    if obj.metadata.name.is_none() {
        return Err(vec!["metadata.name: required".into()]);
    }
    obj.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    obj.metadata.uid.get_or_insert_with(|| OFFLINE_UID.into());
    let rendered = render(&obj, caps).map_err(|e| match e {
        RenderError::Invalid(errors) => errors.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    })?;
    let mut out = String::new();
    for child in rendered.children() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&child.object).expect("children serialize"));
    }
    Ok(out)
}
