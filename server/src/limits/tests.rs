use super::*;
use crate::object::id::Scope;
use std::time::Duration;

fn scopes(pairs: &[(&str, &str)]) -> Scopes {
    Scopes(
        pairs
            .iter()
            .map(|(n, v)| Scope::new(*n, *v).unwrap())
            .collect(),
    )
}

fn admission(yaml_limits: RateLimitsConfig, ks: Vec<KillswitchConfig>) -> Admission {
    Admission::new(&yaml_limits, &ks, &BTreeMap::new()).unwrap()
}

#[test]
fn killswitch_conditions_are_anded_and_switches_ored() {
    let a = admission(
        RateLimitsConfig::default(),
        vec![
            KillswitchConfig {
                usecase: Some("att".into()),
                scopes: [("org".to_owned(), "1".to_owned())].into(),
                service: None,
            },
            KillswitchConfig {
                service: Some("Relay-*".into()),
                ..Default::default()
            },
        ],
    );
    assert!(a.killswitched("att", &scopes(&[("org", "1"), ("p", "2")]), None));
    assert!(!a.killswitched("att", &scopes(&[("org", "2")]), None));
    assert!(!a.killswitched("other", &scopes(&[("org", "1")]), None));
    assert!(a.killswitched("other", &scopes(&[]), Some(" relay-eu ")));
    assert!(!a.killswitched("other", &scopes(&[]), Some("sentry")));
    let all = admission(
        RateLimitsConfig::default(),
        vec![KillswitchConfig::default()],
    );
    assert!(all.killswitched("x", &scopes(&[]), None));
}

#[test]
fn throughput_buckets_refuse_with_their_kind() {
    let mut limits = RateLimitsConfig::default();
    limits.throughput.global_rps = Some(100);
    limits.throughput.usecase_pct = Some(2);
    let a = admission(limits, vec![]);
    assert!(a.admit("a", &scopes(&[])).is_ok());
    assert!(a.admit("a", &scopes(&[])).is_ok());
    assert_eq!(
        a.admit("a", &scopes(&[])).unwrap_err(),
        Limited::ThroughputUsecase
    );
    assert!(a.admit("b", &scopes(&[])).is_ok());

    let mut limits = RateLimitsConfig::default();
    limits.throughput.rules = vec![ThroughputRule {
        scopes: vec![("org".into(), "1".into())],
        rps: Some(1),
        ..Default::default()
    }];
    let a = admission(limits, vec![]);
    assert!(a.admit("a", &scopes(&[("org", "1")])).is_ok());
    assert_eq!(
        a.admit("b", &scopes(&[("org", "1")])).unwrap_err(),
        Limited::ThroughputRule
    );
    assert!(a.admit("b", &scopes(&[("org", "2")])).is_ok());
}

#[test]
fn bandwidth_debt_refuses_new_requests_unless_report_only() {
    for report_only in [false, true] {
        let mut limits = RateLimitsConfig::default();
        limits.bandwidth.global_bps = Some(1000);
        limits.bandwidth.burst_ms = 1000;
        limits.bandwidth.report_only = report_only;
        let a = admission(limits, vec![]);
        let charge = a.admit("a", &scopes(&[])).unwrap();
        charge.add(1_000_000); // 1000 s of debt
        let second = a.admit_reporting("a", &scopes(&[]));
        assert_eq!(second.is_ok(), report_only);
        if report_only {
            assert_eq!(second.as_ref().unwrap().1, Some(Limited::BandwidthGlobal));
        }
        if !report_only {
            assert_eq!(second.unwrap_err(), Limited::BandwidthGlobal);
        }
    }
}

#[test]
fn impossible_limits_name_their_key() {
    let mut limits = RateLimitsConfig::default();
    limits.throughput.usecase_pct = Some(10);
    let err = Admission::new(&limits, &[], &BTreeMap::new()).unwrap_err();
    assert_eq!(err.key, "rate_limits.throughput.usecase_pct");
    limits.throughput.global_rps = Some(5);
    let err = Admission::new(&limits, &[], &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("0 requests per second"), "{err}");
    let mut limits = RateLimitsConfig::default();
    limits.bandwidth.global_bps = Some(0);
    assert_eq!(
        Admission::new(&limits, &[], &BTreeMap::new())
            .unwrap_err()
            .key,
        "rate_limits.bandwidth.global_bps"
    );
    let ks = [KillswitchConfig {
        service: Some("[".into()),
        ..Default::default()
    }];
    let err = Admission::new(&RateLimitsConfig::default(), &ks, &BTreeMap::new()).unwrap_err();
    assert_eq!(err.key, "killswitches[0].service");
}

#[test]
fn usecase_expiration_policy() {
    let mut usecases = BTreeMap::new();
    let mut u = UsecaseConfig::default();
    u.expiration.manual.allowed = false;
    u.expiration.ttl.max = Some(Duration::from_secs(3600));
    usecases.insert("att".to_owned(), u);
    let a = Admission::new(&RateLimitsConfig::default(), &[], &usecases).unwrap();
    let err = a
        .check_policy("att", &ExpirationPolicy::Manual)
        .unwrap_err();
    assert!(err.to_string().contains("'manual' is not allowed"), "{err}");
    let err = a
        .check_policy(
            "att",
            &ExpirationPolicy::TimeToLive(Duration::from_secs(3601)),
        )
        .unwrap_err();
    assert!(err.to_string().contains("exceeds maximum"), "{err}");
    assert!(a
        .check_policy(
            "att",
            &ExpirationPolicy::TimeToLive(Duration::from_secs(3600))
        )
        .is_ok());
    assert!(a
        .check_policy(
            "att",
            &ExpirationPolicy::TimeToIdle(Duration::from_secs(99_999))
        )
        .is_ok());
    assert!(a.check_policy("other", &ExpirationPolicy::Manual).is_ok());
}
