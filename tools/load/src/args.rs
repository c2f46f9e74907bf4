//! Command-line arguments and the pure parsers behind them (sizes, durations, scopes,
//! target URLs).

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Largest accepted payload size: the tool keeps one payload per worker in memory.
pub const MAX_SIZE: u64 = 1 << 30;
/// Longest accepted measurement (or warm-up) window.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most concurrent workers.
pub const MAX_CONCURRENCY: usize = 10_000;

/// Which object operation the workers issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// `PUT /v1/objects/{usecase}/{scopes}/{key}` with a payload of `--size` bytes.
    Put,
    /// `GET` of keys written once before the run.
    Get,
    /// `GET` with probability `--read-percent`, otherwise `PUT`.
    Mixed,
}

/// Load generator for any objectstore-compatible server.
#[derive(Debug, Parser)]
#[command(
    name = "strata-load",
    version,
    about = "Drive an objectstore v1 compatible server (loopback only) and report \
             throughput, status codes and latency percentiles"
)]
pub struct Args {
    /// Base URL of the server, e.g. `http://127.0.0.1:8888` (plain HTTP, loopback hosts only).
    #[arg(long)]
    pub url: String,
    /// Usecase path segment.
    #[arg(long, default_value = "load-test")]
    pub usecase: String,
    /// Scope `name=value`; repeat for nested scopes (order matters). None means `_`.
    #[arg(long = "scope", value_name = "NAME=VALUE")]
    pub scopes: Vec<String>,
    /// Operation mix.
    #[arg(long, value_enum, default_value_t = Op::Put)]
    pub op: Op,
    /// Payload size for writes: bytes, or with a unit (`4KiB`, `1MiB`, `64k`, `1m`).
    #[arg(long, default_value = "4096", value_parser = parse_size)]
    pub size: u64,
    /// Number of distinct keys the workers pick from.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Prefix of the generated keys (`{prefix}{index}`).
    #[arg(long, default_value = "load-")]
    pub key_prefix: String,
    /// Concurrent workers, each with at most one request in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Measurement window (humantime: `10s`, `1m 30s`, `500ms`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before the measurement window; its requests are not recorded.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open a fresh TCP connection for every request instead of keeping one per worker.
    #[arg(long)]
    pub new_connection: bool,
    /// Percentage of GETs in `--op mixed`.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub read_percent: u8,
    /// Instead of objects, GET this path (e.g. `/health`) to measure the HTTP ceiling.
    #[arg(long)]
    pub target_path: Option<String>,
    /// Bearer token sent as `x-os-auth: Bearer TOKEN` (for servers that enforce auth).
    #[arg(long, env = "STRATA_LOAD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Per-request timeout; a request exceeding it counts as a `timeout` error.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl Args {
    /// Checks limits and cross-field rules that clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(format!(
                "--concurrency must be within 1..={MAX_CONCURRENCY}, got {}",
                self.concurrency
            ));
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".to_owned());
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(format!(
                "--duration must be within (0, {}]",
                humantime::format_duration(MAX_DURATION)
            ));
        }
        if self.warmup > MAX_DURATION {
            return Err(format!(
                "--warmup must be at most {}",
                humantime::format_duration(MAX_DURATION)
            ));
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be positive".to_owned());
        }
        if let Some(path) = &self.target_path {
            if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
                return Err(format!(
                    "--target-path must be an absolute URL path, got {path:?}"
                ));
            }
        }
        let usecase_ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if self.usecase.is_empty() || !self.usecase.chars().all(usecase_ok) {
            return Err(format!(
                "--usecase must be non-empty [A-Za-z0-9_-], got {:?}",
                self.usecase
            ));
        }
        if let Some(token) = &self.token {
            if http::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
                return Err("--token must be a valid header value".to_owned());
            }
        }
        let key_ok = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
        if !self.key_prefix.chars().all(key_ok) {
            return Err(format!(
                "--key-prefix may only use [A-Za-z0-9-._~/], got {:?}",
                self.key_prefix
            ));
        }
        Ok(())
    }

    /// The scopes path segment: `name=value;…`, or `_` when there are none.
    pub fn scope_segment(&self) -> Result<String, String> {
        scope_segment(&self.scopes)
    }
}

/// Parses a byte size: a plain integer, or an integer with a unit. Binary units
/// (`KiB`, `MiB`, `GiB`) and their short forms (`k`, `m`, `g`, case-insensitive, optional
/// trailing `b`) are powers of 1024; decimal `kB`, `MB`, `GB` are powers of 1000.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!("size {text:?} must start with a number"));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| format!("size {text:?} is out of range"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "b" | "B" => 1,
        "KiB" | "k" | "K" | "kb" | "Kb" | "kib" => 1 << 10,
        "MiB" | "m" | "M" | "mb" | "Mb" | "mib" => 1 << 20,
        "GiB" | "g" | "G" | "gb" | "Gb" | "gib" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    let size = number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} is out of range"))?;
    if size > MAX_SIZE {
        return Err(format!("size {text:?} exceeds the maximum of 1GiB"));
    }
    Ok(size)
}

/// Parses a humantime duration (`10s`, `1m 30s`, `250ms`); a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text
            .parse()
            .map_err(|_| format!("duration {text:?} is out of range"))?;
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|err| format!("invalid duration {text:?}: {err}"))
}

/// Joins `name=value` scopes into the API path segment, checking the scope grammar
/// (objectstore API §3.3). An empty list gives `_`.
pub fn scope_segment(scopes: &[String]) -> Result<String, String> {
    fn scope_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || "_-()$!+'".contains(c)
    }
    let mut parts = Vec::new();
    for scope in scopes.iter().flat_map(|s| s.split(';')) {
        let (name, value) = scope
            .split_once('=')
            .ok_or_else(|| format!("scope {scope:?} must be name=value"))?;
        if name.is_empty() || value.is_empty() || !name.chars().chain(value.chars()).all(scope_char)
        {
            return Err(format!(
                "scope {scope:?}: name and value must be non-empty and use only A-Za-z0-9_-()$!+'"
            ));
        }
        parts.push(format!("{name}={value}"));
    }
    if parts.is_empty() {
        Ok("_".to_owned())
    } else {
        Ok(parts.join(";"))
    }
}

/// A parsed base URL: where to connect and what to put in front of every path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` as written in the URL (used for the `Host` header and for resolving).
    pub authority: String,
    /// Host part without port or brackets.
    pub host: String,
    /// TCP port (80 when the URL has none).
    pub port: u16,
    /// Path prefix without a trailing slash (empty for the root).
    pub base_path: String,
}

/// Parses `http://host[:port][/prefix]`. Only plain HTTP to loopback hosts (`localhost`,
/// `127.0.0.0/8`, `::1`) is accepted: this tool generates heavy load and must never be
/// aimed at someone else's machine by accident.
pub fn parse_target(url: &str) -> Result<Target, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|err| format!("invalid --url {url:?}: {err}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("--url scheme must be http, got {other:?}")),
        None => return Err(format!("--url {url:?} needs the http:// scheme")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("--url {url:?} has no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if !is_loopback_host(host) {
        return Err(format!(
            "--url host {host:?} is not a loopback address; strata-load only targets loopback"
        ));
    }
    if uri.query().is_some() {
        return Err("--url must not have a query string".to_owned());
    }
    Ok(Target {
        authority: authority.as_str().to_owned(),
        host: host.to_owned(),
        port: authority.port_u16().unwrap_or(80),
        base_path: uri.path().trim_end_matches('/').to_owned(),
    })
}

/// True for `localhost` and literal loopback IP addresses.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size(" 16 KiB "), Ok(16 << 10));
        assert!(parse_size("").is_err());
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("2GiB").is_err(), "above the 1GiB cap");
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("10 parsecs").is_err());
    }

    #[test]
    fn scopes() {
        assert_eq!(scope_segment(&[]), Ok("_".to_owned()));
        assert_eq!(scope_segment(&["org=1".into()]), Ok("org=1".to_owned()));
        assert_eq!(
            scope_segment(&["org=1".into(), "project=2".into()]),
            Ok("org=1;project=2".to_owned())
        );
        assert_eq!(
            scope_segment(&["org=1;project=2".into()]),
            Ok("org=1;project=2".to_owned())
        );
        assert!(scope_segment(&["org".into()]).is_err());
        assert!(scope_segment(&["org=".into()]).is_err());
        assert!(scope_segment(&["=1".into()]).is_err());
        assert!(scope_segment(&["org=a/b".into()]).is_err());
        assert!(scope_segment(&["org=a.b".into()]).is_err());
    }

    #[test]
    fn targets() {
        let t = parse_target("http://127.0.0.1:8888").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8888");
        assert_eq!(t.port, 8888);
        assert_eq!(t.base_path, "");
        let t = parse_target("http://localhost:9000/prefix/").unwrap();
        assert_eq!(t.host, "localhost");
        assert_eq!(t.base_path, "/prefix");
        let t = parse_target("http://[::1]:1234").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 1234);
        assert_eq!(parse_target("http://127.0.0.1").unwrap().port, 80);
        assert!(parse_target("https://127.0.0.1:1").is_err());
        assert!(parse_target("http://10.0.0.1:8888").is_err());
        assert!(parse_target("http://example.com").is_err());
        assert!(parse_target("127.0.0.1:8888").is_err());
        assert!(parse_target("http://127.0.0.1:1/?a=b").is_err());
    }

    #[test]
    fn cli_parses_the_documented_example() {
        let args = Args::try_parse_from([
            "strata-load",
            "--url",
            "http://127.0.0.1:8888",
            "--usecase",
            "attachments",
            "--scope",
            "org=1",
            "--op",
            "mixed",
            "--size",
            "4096",
            "--keys",
            "1000",
            "--concurrency",
            "32",
            "--duration",
            "10s",
            "--new-connection",
            "--warmup",
            "2s",
        ])
        .unwrap();
        assert_eq!(args.op, Op::Mixed);
        assert_eq!(args.size, 4096);
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.warmup, Duration::from_secs(2));
        assert!(args.new_connection);
        assert_eq!(args.scope_segment().unwrap(), "org=1");
        args.validate().unwrap();

        let bad = Args::try_parse_from([
            "strata-load",
            "--url",
            "http://127.0.0.1:1",
            "--concurrency",
            "0",
        ])
        .unwrap();
        assert!(bad.validate().is_err());
        for extra in [
            ["--usecase", "a/b"],
            ["--usecase", "sp ace"],
            ["--key-prefix", "k y"],
            ["--key-prefix", "k%"],
            ["--target-path", "health"],
            ["--target-path", "/he alth"],
        ] {
            let mut argv = vec!["strata-load", "--url", "http://127.0.0.1:1"];
            argv.extend(extra);
            let args = Args::try_parse_from(argv).unwrap();
            assert!(args.validate().is_err(), "{extra:?}");
        }
        assert!(
            Args::try_parse_from(["strata-load", "--url", "x", "--read-percent", "101"]).is_err()
        );
    }
}
