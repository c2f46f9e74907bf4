//! Would applying a desired object change anything? A structural subset check of JSON
//! values that knows Kubernetes stores resource quantities in canonical form.

use serde_json::Value;

/// True when every field set in `desired` has the same value in `actual`. Fields the
/// API server adds (defaults, status, uid…) are ignored, so this is exactly "would a
/// server-side apply of `desired` change anything we own?".
pub fn is_subset(desired: &Value, actual: &Value) -> bool {
    subset_at(desired, actual, false)
}

/// Keys whose values are maps of resource quantities, which the API server stores in
/// canonical form (`1000m` comes back as `1`).
const QUANTITY_MAPS: [&str; 2] = ["requests", "limits"];

fn subset_at(desired: &Value, actual: &Value, quantities: bool) -> bool {
    match (desired, actual) {
        (Value::Null, _) => true,
        (Value::Object(d), Value::Object(a)) => d.iter().all(|(k, v)| match a.get(k) {
            Some(av) => subset_at(v, av, quantities || QUANTITY_MAPS.contains(&k.as_str())),
            None => v.is_null() || v.as_object().is_some_and(|o| o.is_empty()),
        }),
        (Value::Array(d), Value::Array(a)) => {
            d.len() == a.len() && d.iter().zip(a).all(|(dv, av)| subset_at(dv, av, false))
        }
        (Value::String(d), Value::String(a)) if quantities && d != a => {
            match (parse_quantity(d), parse_quantity(a)) {
                (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()) * 4.0,
                _ => false,
            }
        }
        (d, a) => d == a,
    }
}

/// Parses a Kubernetes quantity (`500m`, `1.5Gi`, `2e3`) into its numeric value.
pub fn parse_quantity(text: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 15] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let text = text.trim();
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    text.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_ignores_server_fields() {
        let desired = json!({"a": 1, "b": {"c": [ {"x": 1} ]}, "e": {}});
        let actual = json!({"a": 1, "b": {"c": [ {"x": 1, "y": 2} ], "d": 3}, "z": 0});
        assert!(is_subset(&desired, &actual));
        assert!(!is_subset(&json!({"a": 2}), &actual));
        assert!(!is_subset(&json!({"b": {"c": []}}), &actual));
    }

    #[test]
    fn quantities_compare_by_value() {
        let desired = json!({"resources": {"requests": {"cpu": "1000m", "memory": "1Gi"}}});
        let actual = json!({"resources": {"requests": {"cpu": "1", "memory": "1073741824"}}});
        assert!(is_subset(&desired, &actual));
        let bigger = json!({"resources": {"requests": {"cpu": "2", "memory": "1Gi"}}});
        assert!(!is_subset(&desired, &bigger));
        // outside resource maps strings stay strings
        assert!(!is_subset(
            &json!({"image": "a:1.0"}),
            &json!({"image": "a:1"})
        ));
        assert_eq!(parse_quantity("1.5Ki"), Some(1536.0));
        assert_eq!(parse_quantity("nope"), None);
    }
}
