//! How the objects of one `StorageService` are found: the labels the operator puts on
//! them and the port the server pods listen on. The dashboard discovers pods with these.

use std::collections::BTreeMap;

/// `app.kubernetes.io/name` of every server object.
pub const APP_NAME: &str = "strata-server";

/// Port the server listens on inside the pod (container port `http`).
pub const HTTP_PORT: u16 = 8888;

/// Labels that select the pods of StorageService `name`.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
    ])
}
