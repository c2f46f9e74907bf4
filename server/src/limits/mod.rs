//! Request admission by policy (api §5.3, §8): killswitches, throughput and bandwidth
//! limits, and the per-usecase expiration policy. Built once from the configuration;
//! every check is pure apart from the bucket state.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::object::expiration::ExpirationPolicy;
use crate::object::Scopes;

pub mod bandwidth;
pub mod throughput;

pub use strata_types::access::{
    BandwidthConfig, ExpirationRules, KillswitchConfig, PolicyRule, RateLimitsConfig,
    ThroughputConfig, ThroughputRule, UsecaseConfig,
};

use bandwidth::{Bucket, Charge, Clock, Gcra, KeyedBuckets};
use throughput::{percent_of, quota, Rule, Throughput};

/// Header naming the calling service, matched by killswitch `service` globs.
pub const DOWNSTREAM_SERVICE: &str = "x-downstream-service";

/// Which bucket refused a request (the `kind` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    /// Global bandwidth debt.
    #[error("bandwidth_global")]
    BandwidthGlobal,
    /// Per-usecase bandwidth debt.
    #[error("bandwidth_usecase")]
    BandwidthUsecase,
    /// Per-scope bandwidth debt.
    #[error("bandwidth_scope")]
    BandwidthScope,
    /// Global request rate.
    #[error("throughput_global")]
    ThroughputGlobal,
    /// Per-usecase request rate.
    #[error("throughput_usecase")]
    ThroughputUsecase,
    /// Per-scope request rate.
    #[error("throughput_scope")]
    ThroughputScope,
    /// A rule's request rate.
    #[error("throughput_rule")]
    ThroughputRule,
}

impl Limited {
    /// Every kind, for metric initialisation.
    pub const ALL: [Limited; 7] = [
        Limited::BandwidthGlobal,
        Limited::BandwidthUsecase,
        Limited::BandwidthScope,
        Limited::ThroughputGlobal,
        Limited::ThroughputUsecase,
        Limited::ThroughputScope,
        Limited::ThroughputRule,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Limited::BandwidthGlobal => "bandwidth_global",
            Limited::BandwidthUsecase => "bandwidth_usecase",
            Limited::BandwidthScope => "bandwidth_scope",
            Limited::ThroughputGlobal => "throughput_global",
            Limited::ThroughputUsecase => "throughput_usecase",
            Limited::ThroughputScope => "throughput_scope",
            Limited::ThroughputRule => "throughput_rule",
        }
    }
}

/// Why a request was refused by admission policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// A killswitch matched (403 text).
    #[error("Object access is disabled for this scope through killswitches")]
    Killswitched,
    /// A bucket is empty or in debt (429 text).
    #[error("Object access is rate limited")]
    RateLimited(Limited),
}

/// An expiration policy the usecase does not allow (400 JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The kind is switched off.
    #[error("expiration policy '{kind}' is not allowed for usecase '{usecase}'")]
    NotAllowed {
        /// `manual`, `ttl` or `tti`.
        kind: &'static str,
        /// The usecase.
        usecase: String,
    },
    /// The duration is too long.
    #[error("expiration policy '{kind}' duration {requested} exceeds maximum {max} for usecase '{usecase}'")]
    TooLong {
        /// `ttl` or `tti`.
        kind: &'static str,
        /// What was asked.
        requested: String,
        /// The configured maximum.
        max: String,
        /// The usecase.
        usecase: String,
    },
}

/// A configuration that cannot be enforced; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct LimitsConfigError {
    /// Dotted config key.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn config_error(key: impl Into<String>, message: impl Into<String>) -> LimitsConfigError {
    LimitsConfigError {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug)]
struct Killswitch {
    usecase: Option<String>,
    scopes: BTreeMap<String, String>,
    service: Option<glob::Pattern>,
}

impl Killswitch {
    fn matches(&self, usecase: &str, scopes: &Scopes, service: Option<&str>) -> bool {
        self.usecase.as_deref().is_none_or(|u| u == usecase)
            && self
                .scopes
                .iter()
                .all(|(n, v)| scopes.0.iter().any(|s| &s.name == n && &s.value == v))
            && self
                .service
                .as_ref()
                .is_none_or(|p| service.is_some_and(|s| p.matches(s)))
    }
}

#[derive(Debug, Default)]
struct Bandwidth {
    clock: Clock,
    report_only: bool,
    global: Option<Arc<Bucket>>,
    usecase: Option<KeyedBuckets>,
    scope: Option<KeyedBuckets>,
}

/// Killswitches, rate limits and usecase policy, built once at start.
#[derive(Debug, Default)]
pub struct Admission {
    killswitches: Vec<Killswitch>,
    throughput: Throughput,
    bandwidth: Bandwidth,
    usecases: BTreeMap<String, UsecaseConfig>,
    /// The configured global limits, for `/keda`.
    pub global_rps: Option<u32>,
    /// The configured global bandwidth, for `/keda`.
    pub global_bps: Option<u64>,
}

/// Normalizes an `x-downstream-service` value: trimmed and lowercased.
pub fn normalize_service(value: &str) -> String {
    value.trim().to_ascii_lowercase()
}

impl Admission {
    /// Validates and builds everything; impossible limits and bad globs name their key.
    pub fn new(
        rate_limits: &RateLimitsConfig,
        killswitches: &[KillswitchConfig],
        usecases: &BTreeMap<String, UsecaseConfig>,
    ) -> Result<Self, LimitsConfigError> {
        let killswitches = killswitches
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let service = k
                    .service
                    .as_deref()
                    .map(|g| {
                        glob::Pattern::new(&normalize_service(g)).map_err(|e| {
                            config_error(
                                format!("killswitches[{i}].service"),
                                format!("bad glob `{g}`: {e}"),
                            )
                        })
                    })
                    .transpose()?;
                Ok(Killswitch {
                    usecase: k.usecase.clone(),
                    scopes: k.scopes.clone(),
                    service,
                })
            })
            .collect::<Result<_, LimitsConfigError>>()?;

        let t = &rate_limits.throughput;
        let key = "rate_limits.throughput";
        let pct_of_global = |pct: u8, name: &str| -> Result<u32, LimitsConfigError> {
            let global = t.global_rps.ok_or_else(|| {
                config_error(format!("{key}.{name}"), "a percentage needs global_rps")
            })?;
            check_pct(pct, &format!("{key}.{name}"))?;
            Ok(percent_of(global, pct))
        };
        let make_quota = |rps: u32, name: &str| {
            quota(rps, t.burst).ok_or_else(|| {
                config_error(
                    format!("{key}.{name}"),
                    "the limit works out to 0 requests per second; raise it or remove it",
                )
            })
        };
        let mut throughput = Throughput::default();
        if let Some(rps) = t.global_rps {
            throughput.global = Some(governor::RateLimiter::direct(make_quota(
                rps,
                "global_rps",
            )?));
        }
        if let Some(pct) = t.usecase_pct {
            let q = make_quota(pct_of_global(pct, "usecase_pct")?, "usecase_pct")?;
            throughput.usecase = Some(governor::RateLimiter::keyed(q));
        }
        if let Some(pct) = t.scope_pct {
            let q = make_quota(pct_of_global(pct, "scope_pct")?, "scope_pct")?;
            throughput.scope = Some(governor::RateLimiter::keyed(q));
        }
        for (i, rule) in t.rules.iter().enumerate() {
            let name = format!("rules[{i}]");
            let from_pct = rule
                .pct
                .map(|p| pct_of_global(p, &format!("{name}.pct")))
                .transpose()?;
            let rps = match (rule.rps, from_pct) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => {
                    return Err(config_error(
                        format!("{key}.{name}"),
                        "a rule needs rps or pct",
                    ))
                }
            };
            throughput
                .rules
                .push(Rule::new(rule, make_quota(rps, &name)?));
        }

        let b = &rate_limits.bandwidth;
        let key = "rate_limits.bandwidth";
        let burst_nanos = b.burst_ms.saturating_mul(1_000_000);
        let gcra = |bps: u64, name: &str| -> Result<Gcra, LimitsConfigError> {
            if bps == 0 {
                return Err(config_error(
                    format!("{key}.{name}"),
                    "the limit works out to 0 bytes per second; raise it or remove it",
                ));
            }
            Ok(Gcra {
                rate: bps,
                burst_nanos,
            })
        };
        let bw_pct = |pct: u8, name: &str| -> Result<Gcra, LimitsConfigError> {
            let global = b.global_bps.ok_or_else(|| {
                config_error(format!("{key}.{name}"), "a percentage needs global_bps")
            })?;
            check_pct(pct, &format!("{key}.{name}"))?;
            gcra((u128::from(global) * u128::from(pct) / 100) as u64, name)
        };
        let bandwidth = Bandwidth {
            clock: Clock::new(),
            report_only: b.report_only,
            global: b
                .global_bps
                .map(|bps| gcra(bps, "global_bps"))
                .transpose()?
                .map(|g| Arc::new(Bucket::new(g))),
            usecase: b
                .usecase_pct
                .map(|p| bw_pct(p, "usecase_pct"))
                .transpose()?
                .map(KeyedBuckets::new),
            scope: b
                .scope_pct
                .map(|p| bw_pct(p, "scope_pct"))
                .transpose()?
                .map(KeyedBuckets::new),
        };
        for (name, u) in usecases {
            for (kind, rule) in [("manual", &u.expiration.manual)] {
                if rule.max.is_some() {
                    return Err(config_error(
                        format!("usecases.{name}.expiration.{kind}.max"),
                        "manual objects never expire; remove max",
                    ));
                }
            }
        }
        Ok(Self {
            killswitches,
            throughput,
            bandwidth,
            usecases: usecases.clone(),
            global_rps: t.global_rps,
            global_bps: b.global_bps,
        })
    }

    /// Whether a killswitch blocks this request (api §8).
    pub fn killswitched(&self, usecase: &str, scopes: &Scopes, service: Option<&str>) -> bool {
        if self.killswitches.is_empty() {
            return false;
        }
        let service = service.map(normalize_service);
        self.killswitches
            .iter()
            .any(|k| k.matches(usecase, scopes, service.as_deref()))
    }

    /// Admits a request through the rate limits: bandwidth debt first, then a throughput
    /// token from each bucket. Returns the buckets its payload bytes are charged to.
    pub fn admit(&self, usecase: &str, scopes: &Scopes) -> Result<Charge, Limited> {
        self.admit_reporting(usecase, scopes)
            .map(|(charge, _)| charge)
    }

    /// Like [`Admission::admit`], also naming a bandwidth limit that was exceeded but only
    /// reported (`report_only`), so that it can be counted.
    pub fn admit_reporting(
        &self,
        usecase: &str,
        scopes: &Scopes,
    ) -> Result<(Charge, Option<Limited>), Limited> {
        let bw = &self.bandwidth;
        let now = bw.clock.now();
        let mut buckets = Vec::new();
        let mut refused = None;
        if let Some(g) = &bw.global {
            if !g.admits(now) {
                refused = refused.or(Some(Limited::BandwidthGlobal));
            }
            buckets.push(g.clone());
        }
        if let Some(k) = &bw.usecase {
            let b = k.get(usecase, now);
            if !b.admits(now) {
                refused = refused.or(Some(Limited::BandwidthUsecase));
            }
            buckets.push(b);
        }
        if let Some(k) = &bw.scope {
            let b = k.get(&format!("{usecase}/{}", scopes.to_wire()), now);
            if !b.admits(now) {
                refused = refused.or(Some(Limited::BandwidthScope));
            }
            buckets.push(b);
        }
        if let Some(kind) = refused {
            if !bw.report_only {
                return Err(kind);
            }
            tracing::debug!(
                kind = kind.as_str(),
                "bandwidth limit exceeded (report only)"
            );
        }
        self.throughput.admit(usecase, scopes)?;
        let charge = if buckets.is_empty() {
            Charge::default()
        } else {
            Charge::new(buckets, bw.clock)
        };
        Ok((charge, refused))
    }

    /// Takes the throughput token each operation of a batch needs beyond its request's
    /// own (api §7, step 2); bandwidth is charged per insert instead.
    pub fn admit_operation(&self, usecase: &str, scopes: &Scopes) -> Result<(), Limited> {
        self.throughput.admit(usecase, scopes)
    }

    /// Checks an insert's expiration policy against `usecases.<usecase>` (api §8).
    pub fn check_policy(
        &self,
        usecase: &str,
        policy: &ExpirationPolicy,
    ) -> Result<(), PolicyError> {
        let Some(config) = self.usecases.get(usecase) else {
            return Ok(());
        };
        let rules = &config.expiration;
        let (kind, rule, duration) = match policy {
            ExpirationPolicy::Manual => ("manual", &rules.manual, None),
            ExpirationPolicy::TimeToLive(d) => ("ttl", &rules.ttl, Some(*d)),
            ExpirationPolicy::TimeToIdle(d) => ("tti", &rules.tti, Some(*d)),
        };
        if !rule.allowed {
            return Err(PolicyError::NotAllowed {
                kind,
                usecase: usecase.to_owned(),
            });
        }
        if let (Some(d), Some(max)) = (duration, rule.max) {
            if d > max {
                return Err(PolicyError::TooLong {
                    kind,
                    requested: humantime::format_duration(d).to_string(),
                    max: humantime::format_duration(max).to_string(),
                    usecase: usecase.to_owned(),
                });
            }
        }
        Ok(())
    }
}

fn check_pct(pct: u8, key: &str) -> Result<(), LimitsConfigError> {
    if (1..=100).contains(&pct) {
        Ok(())
    } else {
        Err(config_error(
            key,
            format!("must be within 1..=100, got {pct}"),
        ))
    }
}

#[cfg(test)]
mod tests;
