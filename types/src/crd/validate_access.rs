//! The operator's own checks of `auth`, `killswitches`, `rateLimits` and `usecases`:
//! the explicit-off rule, Secret references, and limits the server would refuse at
//! start, bad killswitch globs included (so a bad spec ends in `Degraded`, not in a
//! crash-looping pod).

use super::access::{AUTH_REQUIRED, ENFORCED_WITHOUT_KEYS};
use super::validate::ValidationError;
use super::StorageServiceSpec;

/// Appends every access-control problem of `spec` to `errors`.
pub fn check(spec: &StorageServiceSpec, errors: &mut Vec<ValidationError>) {
    match &spec.auth {
        None => errors.push(ValidationError::new("auth", AUTH_REQUIRED)),
        Some(auth) => {
            if auth.enforce && auth.keys.is_empty() {
                errors.push(ValidationError::new("auth.keys", ENFORCED_WITHOUT_KEYS));
            }
            for (kid, key) in &auth.keys {
                let field = format!("auth.keys.{kid}");
                if !is_key_id(kid) {
                    errors.push(ValidationError::new(
                        &field,
                        "key ids are 1-253 letters, digits, `.`, `_` or `-`, starting with a letter or digit",
                    ));
                }
                if !is_dns_subdomain(&key.secret_name) {
                    errors.push(ValidationError::new(
                        &format!("{field}.secretName"),
                        format!(
                            "`{}` is not a Secret name (lowercase letters, digits, `-` and `.`)",
                            key.secret_name
                        ),
                    ));
                }
                let files = key.files();
                for (i, file) in files.iter().enumerate() {
                    if !is_file_name(file) {
                        errors.push(ValidationError::new(
                            &format!("{field}.keyFiles[{i}]"),
                            format!(
                                "`{file}` is not a Secret key (letters, digits, `-`, `_`, `.`)"
                            ),
                        ));
                    } else if files[..i].contains(file) {
                        errors.push(ValidationError::new(
                            &format!("{field}.keyFiles[{i}]"),
                            format!("`{file}` is listed twice"),
                        ));
                    }
                }
            }
        }
    }
    if let Some(rl) = &spec.rate_limits {
        check_rate_limits(rl, errors);
    }
    if let Some(np) = spec.network_policy.as_ref().filter(|n| n.enabled) {
        if np.clients.is_empty() {
            errors.push(ValidationError::new(
                "networkPolicy.clients",
                "is empty, so no client could reach the service; list the client namespaces/pods or set networkPolicy.enabled to false",
            ));
        }
        for (list, peers) in [("clients", &np.clients), ("scrapers", &np.scrapers)] {
            for (i, peer) in peers.iter().enumerate() {
                if peer.namespace_selector.is_none() && peer.pod_selector.is_none() {
                    errors.push(ValidationError::new(
                        &format!("networkPolicy.{list}[{i}]"),
                        "needs namespaceSelector, podSelector or both",
                    ));
                }
            }
        }
    }
    for (i, k) in spec.killswitches.iter().enumerate() {
        if let Some(g) = &k.service {
            // The server matches the glob against the trimmed, lowercased header.
            if let Err(e) = glob::Pattern::new(&g.trim().to_ascii_lowercase()) {
                errors.push(ValidationError::new(
                    &format!("killswitches[{i}].service"),
                    format!("bad glob `{g}`: {e}"),
                ));
            }
        }
    }
    for (name, usecase) in &spec.usecases {
        if usecase.expiration.manual.max.is_some() {
            errors.push(ValidationError::new(
                &format!("usecases.{name}.expiration.manual.max"),
                "manual objects never expire; remove max",
            ));
        }
    }
}

fn check_rate_limits(rl: &super::RateLimitsSpec, errors: &mut Vec<ValidationError>) {
    let pct = |errors: &mut Vec<ValidationError>,
               field: &str,
               value: Option<u8>,
               global: bool,
               global_name: &str| {
        if let Some(p) = value {
            if !(1..=100).contains(&p) {
                errors.push(ValidationError::new(
                    field,
                    format!("must be within 1..=100, got {p}"),
                ));
            } else if !global {
                errors.push(ValidationError::new(
                    field,
                    format!("a percentage needs {global_name}"),
                ));
            }
        }
    };
    if let Some(t) = &rl.throughput {
        let base = "rateLimits.throughput";
        let global = t.global_rps.is_some();
        if t.global_rps == Some(0) {
            errors.push(ValidationError::new(
                &format!("{base}.globalRps"),
                "0 requests per second refuses everything; raise it or remove it",
            ));
        }
        pct(
            errors,
            &format!("{base}.usecasePct"),
            t.usecase_pct,
            global,
            "rateLimits.throughput.globalRps",
        );
        pct(
            errors,
            &format!("{base}.scopePct"),
            t.scope_pct,
            global,
            "rateLimits.throughput.globalRps",
        );
        for (i, rule) in t.rules.iter().enumerate() {
            let field = format!("{base}.rules[{i}]");
            if rule.rps.is_none() && rule.pct.is_none() {
                errors.push(ValidationError::new(&field, "a rule needs rps or pct"));
            }
            if rule.rps == Some(0) {
                errors.push(ValidationError::new(
                    &format!("{field}.rps"),
                    "0 requests per second refuses everything; raise it or remove the rule",
                ));
            }
            pct(
                errors,
                &format!("{field}.pct"),
                rule.pct,
                global,
                "rateLimits.throughput.globalRps",
            );
            for (j, pair) in rule.scopes.iter().enumerate() {
                if pair.len() != 2 {
                    errors.push(ValidationError::new(
                        &format!("{field}.scopes[{j}]"),
                        format!("must be [name, value], got {} items", pair.len()),
                    ));
                }
            }
        }
    }
    if let Some(b) = &rl.bandwidth {
        let base = "rateLimits.bandwidth";
        let global = b.global_bps.is_some();
        if b.global_bps == Some(0) {
            errors.push(ValidationError::new(
                &format!("{base}.globalBps"),
                "0 bytes per second refuses everything; raise it or remove it",
            ));
        }
        pct(
            errors,
            &format!("{base}.usecasePct"),
            b.usecase_pct,
            global,
            "rateLimits.bandwidth.globalBps",
        );
        pct(
            errors,
            &format!("{base}.scopePct"),
            b.scope_pct,
            global,
            "rateLimits.bandwidth.globalBps",
        );
    }
}

fn is_key_id(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 253
        && kid.starts_with(|c: char| c.is_ascii_alphanumeric())
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use super::super::{AuthSpec, StorageServiceSpec};

    fn spec(value: serde_json::Value) -> StorageServiceSpec {
        serde_json::from_value(value).unwrap()
    }

    fn fields(spec: &StorageServiceSpec) -> Vec<String> {
        validate(spec)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn auth_must_be_stated() {
        let s = spec(serde_json::json!({}));
        let errs = validate(&s).unwrap_err();
        assert_eq!(errs[0].field, "auth");
        assert!(
            errs[0].message.contains("`auth: {enforce: false}`"),
            "{errs:?}"
        );
        let mut s = s;
        s.auth = Some(AuthSpec::disabled());
        assert_eq!(validate(&s), Ok(()));
        assert!(s.access_control_off());
    }

    #[test]
    fn enforce_without_keys_is_refused() {
        let s = spec(serde_json::json!({"auth": {}}));
        let errs = validate(&s).unwrap_err();
        assert_eq!(errs[0].field, "auth.keys");
        assert!(
            errs[0].message.contains("`auth: {enforce: false}`"),
            "{errs:?}"
        );
        let s = spec(
            serde_json::json!({"auth": {"keys": {"relay": {"secretName": "relay-keys", "maxPermissions": ["object.read"]}}}}),
        );
        assert_eq!(validate(&s), Ok(()));
        assert!(!s.access_control_off());
    }

    #[test]
    fn key_ids_secret_names_and_files_are_checked() {
        let s = spec(serde_json::json!({"auth": {"keys": {
            "../x": {"secretName": "Relay_Keys", "keyFiles": ["a.pem", "a.pem", "x/y"]}
        }}}));
        assert_eq!(
            fields(&s),
            [
                "auth.keys.../x",
                "auth.keys.../x.secretName",
                "auth.keys.../x.keyFiles[1]",
                "auth.keys.../x.keyFiles[2]"
            ]
        );
    }

    #[test]
    fn impossible_limits_are_named() {
        let s = spec(serde_json::json!({"auth": {"enforce": false},
            "rateLimits": {
                "throughput": {"usecasePct": 50, "rules": [{"usecase": "u"}, {"rps": 0, "scopes": [["org"]]}]},
                "bandwidth": {"globalBps": 10, "scopePct": 101}},
            "usecases": {"u": {"expiration": {"manual": {"max": "1d"}}}},
            "killswitches": [{"service": "relay-*"}, {"service": "[relay"}]
        }));
        assert_eq!(
            fields(&s),
            [
                "rateLimits.throughput.usecasePct",
                "rateLimits.throughput.rules[0]",
                "rateLimits.throughput.rules[1].rps",
                "rateLimits.throughput.rules[1].scopes[0]",
                "rateLimits.bandwidth.scopePct",
                "killswitches[1].service",
                "usecases.u.expiration.manual.max"
            ]
        );
    }
}
