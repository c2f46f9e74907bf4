//! Object addresses: usecase, ordered scopes and key.
//!
//! The router matches on the raw path and hands each captured segment here. Every
//! segment is percent-decoded first ([`percent_decode_param`]), then interpreted:
//! the usecase is checked by [`validate_usecase`], the scopes are parsed by
//! [`Scopes::parse`] (api §3.3) and the key must be non-empty (api §3.4).

use std::fmt;

/// Why a path parameter was rejected. Maps to HTTP 400.
///
/// The HTTP layer prefixes the Display text with `Invalid URL: ` (api §5.2), which is
/// why the texts here carry no prefix of their own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A percent-decoded path segment is not UTF-8 (`%FF`), so it cannot name anything.
    #[error("path parameter is not valid UTF-8")]
    InvalidUtf8,
    /// A scope lacks `=`, or has an empty name or value, or the list has an empty item.
    #[error("scope must be 'key=value'")]
    ScopeSyntax,
    /// A scope name or value contains a character outside SCOPECHAR; `.`, `/`, `=` and
    /// `;` are separators in storage paths and URLs and must never appear inside one.
    #[error("invalid character '{0}'")]
    InvalidChar(char),
    /// The usecase is empty or longer than 64 bytes.
    #[error("invalid usecase: must be 1 to 64 characters long")]
    UsecaseLength,
    /// The usecase contains a character outside `[A-Za-z0-9_-]`; it becomes the first
    /// component of storage paths, so it is kept to a safe character set.
    #[error(
        "invalid usecase: invalid character '{0}', expected ASCII letters, digits, '_' or '-'"
    )]
    UsecaseChar(char),
    /// The decoded key is empty; every object needs a name.
    #[error("key must not be empty")]
    EmptyKey,
}

/// Percent-decodes one raw path segment (`usecase`, `scopes` or `key`).
///
/// Why: the router matches on the raw path, so `%2F` does not split a segment, and
/// only afterwards each captured parameter is decoded (api §3.1). `%XX` sequences are
/// decoded; a `%` that is not followed by two hex digits is kept literally (as upstream
/// and axum do); `+` stays `+` because this is a path, not a form. The decoded bytes
/// must be UTF-8, strictly, otherwise [`PathError::InvalidUtf8`].
pub fn percent_decode_param(raw: &str) -> Result<String, PathError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| PathError::InvalidUtf8)
}

/// Checks a decoded usecase name: `[A-Za-z0-9_-]{1,64}`.
///
/// Why: the newest clients only send 3–64 such characters (api-newest §3.2); older
/// clients could send 1–2 character names, which stay accepted. Anything else is
/// rejected because the usecase becomes a storage path component.
pub fn validate_usecase(s: &str) -> Result<(), PathError> {
    // A bad character is the more useful hint, so it is reported before the length.
    if let Some(c) = s.chars().find(|c| !is_usecase_char(*c)) {
        return Err(PathError::UsecaseChar(c));
    }
    if s.is_empty() || s.len() > 64 {
        return Err(PathError::UsecaseLength);
    }
    Ok(())
}

fn is_usecase_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// SCOPECHAR of api §3.3.
fn is_scope_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '(' | ')' | '$' | '!' | '+' | '\'')
}

/// One `name=value` scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    /// Scope name (SCOPECHAR+).
    pub name: String,
    /// Scope value (SCOPECHAR+).
    pub value: String,
}

impl Scope {
    /// Builds a scope after checking both parts against the SCOPECHAR grammar, so that
    /// code constructing scopes directly cannot create an address the wire cannot carry.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Result<Self, PathError> {
        let scope = Scope {
            name: name.into(),
            value: value.into(),
        };
        if scope.name.is_empty() || scope.value.is_empty() {
            return Err(PathError::ScopeSyntax);
        }
        if let Some(c) = scope
            .name
            .chars()
            .chain(scope.value.chars())
            .find(|c| !is_scope_char(*c))
        {
            return Err(PathError::InvalidChar(c));
        }
        Ok(scope)
    }
}

/// Ordered scopes; `org=1;project=2` and `project=2;org=1` are different namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Scopes(pub Vec<Scope>);

impl Scopes {
    /// Parses the decoded `{scopes}` path segment (api §3.3).
    ///
    /// Why: scopes name the namespace an object lives in, and both clients produce
    /// exactly this grammar: `_` alone means no scopes, otherwise `name=value` items
    /// joined by `;`, each split at its first `=`. Duplicates are kept, order matters.
    pub fn parse(decoded: &str) -> Result<Scopes, PathError> {
        if decoded == "_" {
            return Ok(Scopes::default());
        }
        decoded
            .split(';')
            .map(|item| {
                let (name, value) = item.split_once('=').ok_or(PathError::ScopeSyntax)?;
                Scope::new(name, value)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Scopes)
    }

    /// The wire form: `_` when empty, otherwise `a=1;b=2`.
    ///
    /// Why: used when building URLs and log fields; [`Scopes::parse`] reads it back.
    pub fn to_wire(&self) -> String {
        self.to_string()
    }

    /// Whether there are no scopes (`_` on the wire).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Scopes {
    /// Same as [`Scopes::to_wire`], so scopes can be used directly in `format!`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("_");
        }
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{}={}", scope.name, scope.value)?;
        }
        Ok(())
    }
}

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

impl ObjectId {
    /// Builds an address from already decoded parts, validating the usecase
    /// ([`validate_usecase`]) and rejecting an empty key.
    ///
    /// Why: an `ObjectId` that exists is always one the wire can address and the
    /// backends can store, so nothing downstream has to re-check it.
    pub fn new(
        usecase: impl Into<String>,
        scopes: Scopes,
        key: impl Into<String>,
    ) -> Result<ObjectId, PathError> {
        let usecase = usecase.into();
        let key = key.into();
        validate_usecase(&usecase)?;
        if key.is_empty() {
            return Err(PathError::EmptyKey);
        }
        Ok(ObjectId {
            usecase,
            scopes,
            key,
        })
    }

    /// Builds an address from the three raw (still percent-encoded) path captures.
    ///
    /// Why: this is exactly what the object routes do (api §3.1): decode each
    /// parameter, then interpret it, in the order usecase, scopes, key.
    pub fn from_raw_segments(
        raw_usecase: &str,
        raw_scopes: &str,
        raw_key: &str,
    ) -> Result<ObjectId, PathError> {
        let usecase = percent_decode_param(raw_usecase)?;
        let scopes = Scopes::parse(&percent_decode_param(raw_scopes)?)?;
        let key = percent_decode_param(raw_key)?;
        ObjectId::new(usecase, scopes, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(n: &str, v: &str) -> Scope {
        Scope {
            name: n.into(),
            value: v.into(),
        }
    }

    #[test]
    fn decode_plain_and_escaped() {
        assert_eq!(percent_decode_param("abc").unwrap(), "abc");
        assert_eq!(percent_decode_param("a%2Fb").unwrap(), "a/b");
        assert_eq!(percent_decode_param("org%3D1").unwrap(), "org=1");
        assert_eq!(percent_decode_param("r%C3%A9").unwrap(), "ré");
        assert_eq!(percent_decode_param("a%2fb").unwrap(), "a/b");
    }

    #[test]
    fn decode_keeps_plus_and_stray_percent() {
        assert_eq!(percent_decode_param("a+b").unwrap(), "a+b");
        assert_eq!(percent_decode_param("100%").unwrap(), "100%");
        assert_eq!(percent_decode_param("%zz").unwrap(), "%zz");
        assert_eq!(percent_decode_param("%4").unwrap(), "%4");
    }

    #[test]
    fn decode_rejects_invalid_utf8() {
        assert_eq!(percent_decode_param("%FF"), Err(PathError::InvalidUtf8));
        assert_eq!(percent_decode_param("a%C3"), Err(PathError::InvalidUtf8));
        assert_eq!(
            PathError::InvalidUtf8.to_string(),
            "path parameter is not valid UTF-8"
        );
    }

    #[test]
    fn scopes_none() {
        assert_eq!(Scopes::parse("_").unwrap(), Scopes::default());
        assert_eq!(Scopes::default().to_wire(), "_");
    }

    #[test]
    fn scopes_ordered_list() {
        let s = Scopes::parse("org=1;project=2").unwrap();
        assert_eq!(s.0, vec![scope("org", "1"), scope("project", "2")]);
        assert_eq!(s.to_wire(), "org=1;project=2");
        let t = Scopes::parse("project=2;org=1").unwrap();
        assert_ne!(s, t);
    }

    #[test]
    fn scopes_all_scopechars() {
        let s = Scopes::parse("aZ09_-()$!+'=x").unwrap();
        assert_eq!(s.0, vec![scope("aZ09_-()$!+'", "x")]);
        // Duplicate names are not rejected.
        assert_eq!(Scopes::parse("a=1;a=2").unwrap().0.len(), 2);
    }

    #[test]
    fn scopes_syntax_errors() {
        for bad in [
            "",
            "org",
            "=1",
            "org=",
            "org=1;",
            ";org=1",
            "org=1;;p=2",
            "_;a=1",
        ] {
            assert_eq!(Scopes::parse(bad), Err(PathError::ScopeSyntax), "{bad:?}");
        }
        assert_eq!(
            PathError::ScopeSyntax.to_string(),
            "scope must be 'key=value'"
        );
    }

    #[test]
    fn scopes_character_errors() {
        assert_eq!(Scopes::parse("a=b=c"), Err(PathError::InvalidChar('=')));
        assert_eq!(Scopes::parse("o.g=1"), Err(PathError::InvalidChar('.')));
        assert_eq!(Scopes::parse("org=1/2"), Err(PathError::InvalidChar('/')));
        assert_eq!(Scopes::parse("org=é"), Err(PathError::InvalidChar('é')));
        assert_eq!(Scopes::parse("org= 1"), Err(PathError::InvalidChar(' ')));
        assert_eq!(
            PathError::InvalidChar('x').to_string(),
            "invalid character 'x'"
        );
    }

    #[test]
    fn usecase_validation() {
        let long = "x".repeat(64);
        for ok in [
            "a",
            "ab",
            "abc",
            "___",
            "attachments",
            "A-z_9",
            long.as_str(),
        ] {
            assert_eq!(validate_usecase(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(validate_usecase(""), Err(PathError::UsecaseLength));
        assert_eq!(
            validate_usecase(&"x".repeat(65)),
            Err(PathError::UsecaseLength)
        );
        assert_eq!(validate_usecase("a.b"), Err(PathError::UsecaseChar('.')));
        assert_eq!(validate_usecase("a b"), Err(PathError::UsecaseChar(' ')));
        assert_eq!(validate_usecase("é"), Err(PathError::UsecaseChar('é')));
        assert!(PathError::UsecaseLength
            .to_string()
            .starts_with("invalid usecase"));
        assert!(PathError::UsecaseChar('.')
            .to_string()
            .starts_with("invalid usecase"));
    }

    #[test]
    fn object_id_rules() {
        let id = ObjectId::new("u", Scopes::default(), "a//a").unwrap();
        assert_eq!(id.key, "a//a");
        assert_eq!(
            ObjectId::new("u", Scopes::default(), ""),
            Err(PathError::EmptyKey)
        );
        assert_eq!(
            ObjectId::new("u.x", Scopes::default(), "k"),
            Err(PathError::UsecaseChar('.'))
        );
    }

    #[test]
    fn object_id_from_raw_segments() {
        let id = ObjectId::from_raw_segments("att", "org%3D1;p=2", "a%2Fb/%C3%A9").unwrap();
        assert_eq!(id.usecase, "att");
        assert_eq!(id.scopes.to_wire(), "org=1;p=2");
        assert_eq!(id.key, "a/b/é");
        assert_eq!(
            ObjectId::from_raw_segments("att", "_", "%FF"),
            Err(PathError::InvalidUtf8)
        );
        assert_eq!(
            ObjectId::from_raw_segments("att", "org", "k"),
            Err(PathError::ScopeSyntax)
        );
    }

    /// Differential check against `objectstore-types` 0.3.0, which clients use to build
    /// scopes: a scope the client can create must be one we accept, and vice versa.
    mod client_compat {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn same_scope_charset(name in "\\PC{0,4}", value in "\\PC{0,4}") {
                let theirs = objectstore_types::scope::Scope::create(&name, &value).is_ok();
                prop_assert_eq!(Scope::new(name.clone(), value.clone()).is_ok(), theirs);
            }

            #[test]
            fn every_client_usecase_is_accepted(name in "[A-Za-z0-9_.-]{0,70}|\\PC{0,8}") {
                if objectstore_types::usecase::Usecase::new(name.clone()).is_ok() {
                    prop_assert_eq!(validate_usecase(&name), Ok(()));
                } else if name.len() >= 3 {
                    // Beyond the client's length rule, both reject the same characters.
                    prop_assert!(validate_usecase(&name).is_err(), "{:?}", name);
                }
            }

            #[test]
            fn same_scope_charset_per_char(c in any::<char>()) {
                let theirs = objectstore_types::scope::Scope::create("n", c).is_ok();
                prop_assert_eq!(Scope::new("n", c.to_string()).is_ok(), theirs, "{:?}", c);
            }
        }
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn scopes_wire_round_trip(
                items in proptest::collection::vec(
                    ("[A-Za-z0-9_()$!+'-]{1,8}", "[A-Za-z0-9_()$!+'-]{1,8}"), 0..5)
            ) {
                let scopes = Scopes(items.into_iter().map(|(name, value)| Scope { name, value }).collect());
                prop_assert_eq!(Scopes::parse(&scopes.to_wire()).unwrap(), scopes);
            }

            #[test]
            fn arbitrary_segments_never_panic(usecase in "\\PC{0,10}", scopes in "\\PC{0,20}", key in "\\PC{0,20}") {
                let _ = ObjectId::from_raw_segments(&usecase, &scopes, &key);
                let _ = Scopes::parse(&scopes);
            }

            #[test]
            fn decode_of_encoded_is_identity(s in "\\PC*") {
                let encoded = percent_encoding::utf8_percent_encode(&s, percent_encoding::NON_ALPHANUMERIC).to_string();
                prop_assert_eq!(percent_decode_param(&encoded).unwrap(), s);
            }
        }
    }
}
