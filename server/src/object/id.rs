//! Object addresses: usecase, ordered scopes and key.

/// One `name=value` scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    /// Scope name (SCOPECHAR+).
    pub name: String,
    /// Scope value (SCOPECHAR+).
    pub value: String,
}

/// Ordered scopes; `org=1;project=2` and `project=2;org=1` are different namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Scopes(pub Vec<Scope>);

/// The full address of one object. Keys are compared byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ObjectId {
    /// The usecase (first path segment after `/v1/objects/`).
    pub usecase: String,
    /// The scopes (`_` on the wire when empty).
    pub scopes: Scopes,
    /// The decoded key; never empty.
    pub key: String,
}
