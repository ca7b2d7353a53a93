//! The rate-limit plugin: keyed GCRA limiters (the `governor` crate) on prelogin, login and
//! registration per address and per account, the REST API per address, new WebSocket
//! connections per account, WebSocket frames per connection and upload bytes per account.
//! Owns its `[plugins.rate_limit]` table and the client address behind trusted proxies.
//!
//! Invariants: proxy headers are believed only when the TCP peer is a trusted proxy; a key
//! idle longer than its window is dropped by a sweeper thread, so memory stays bounded
//! under a spray of addresses; nothing here logs a username or an address.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use securechat_plugin_api::{Admission, AuthStep, Client, Guard, Plugin, PluginContext, Verdict};
use serde::{Deserialize, Serialize};

/// The name of the config table and of the plugin in `/api/features`.
pub const NAME: &str = "rate_limit";

/// `burst` events at once, refilled evenly over `per_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub burst: u32,
    pub per_secs: u64,
}

impl Limit {
    const fn new(burst: u32, per_secs: u64) -> Limit {
        Limit { burst, per_secs }
    }

    fn quota(&self, key: &str) -> Result<Quota, String> {
        let burst = NonZeroU32::new(self.burst)
            .ok_or_else(|| format!("plugins.rate_limit.{key}.burst: must be at least 1"))?;
        if self.per_secs == 0 {
            return Err(format!(
                "plugins.rate_limit.{key}.per_secs: must be at least 1"
            ));
        }
        let period = Duration::from_secs(self.per_secs) / self.burst;
        Quota::with_period(period.max(Duration::from_nanos(1)))
            .map(|q| q.allow_burst(burst))
            .ok_or_else(|| format!("plugins.rate_limit.{key}: bad period"))
    }
}

/// `[plugins.rate_limit]`. The defaults are generous: a person never meets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub enabled: bool,
    /// Peers (IPs or CIDRs) whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<String>,
    pub prelogin_per_ip: Limit,
    pub prelogin_per_account: Limit,
    pub login_per_ip: Limit,
    pub login_per_account: Limit,
    pub register_per_ip: Limit,
    pub register_per_account: Limit,
    /// Every request under `/api/` from one address.
    pub api_per_ip: Limit,
    pub ws_connects_per_account: Limit,
    pub ws_frames_per_connection: Limit,
    /// `burst` bytes, refilled over `per_secs`.
    pub upload_bytes_per_account: Limit,
    /// Seconds between sweeps that drop keys idle longer than their window.
    pub sweep_interval_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            trusted_proxies: Vec::new(),
            prelogin_per_ip: Limit::new(300, 60),
            prelogin_per_account: Limit::new(60, 60),
            login_per_ip: Limit::new(100, 60),
            login_per_account: Limit::new(30, 60),
            register_per_ip: Limit::new(300, 3600),
            register_per_account: Limit::new(60, 60),
            api_per_ip: Limit::new(20_000, 60),
            ws_connects_per_account: Limit::new(120, 60),
            ws_frames_per_connection: Limit::new(2000, 1),
            upload_bytes_per_account: Limit::new(256 * 1024 * 1024, 1),
            sweep_interval_secs: 30,
        }
    }
}

impl Settings {
    /// Reads the table on top of the defaults, so one field of a limit can be set alone
    /// (`SECURECHAT_PLUGINS__RATE_LIMIT__LOGIN_PER_IP__BURST=5`); names unknown keys.
    pub fn from_value(v: &serde_json::Value) -> Result<Settings, String> {
        let mut base = serde_json::to_value(Settings::default()).map_err(|e| e.to_string())?;
        merge(&mut base, v);
        serde_json::from_value(base).map_err(|e| format!("plugins.rate_limit: {e}"))
    }
}

/// Lays `over` onto `base`, object by object.
fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) if !v.is_null() => *slot = v.clone(),
        _ => {}
    }
}

type Keyed<K> = DefaultKeyedRateLimiter<K>;

/// The limiters.
pub struct Limiters {
    trusted: Vec<IpNet>,
    prelogin_ip: Keyed<IpAddr>,
    prelogin_account: Keyed<String>,
    login_ip: Keyed<IpAddr>,
    login_account: Keyed<String>,
    register_ip: Keyed<IpAddr>,
    register_account: Keyed<String>,
    api_ip: Keyed<IpAddr>,
    connects: Keyed<String>,
    frames: Keyed<u64>,
    upload: Keyed<String>,
    upload_burst: u32,
    clock: DefaultClock,
}

impl Limiters {
    pub fn new(s: &Settings) -> Result<Limiters, String> {
        let trusted = s
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("plugins.rate_limit.trusted_proxies: {p:?} is not an IP or CIDR")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Limiters {
            trusted,
            prelogin_ip: Keyed::keyed(s.prelogin_per_ip.quota("prelogin_per_ip")?),
            prelogin_account: Keyed::keyed(s.prelogin_per_account.quota("prelogin_per_account")?),
            login_ip: Keyed::keyed(s.login_per_ip.quota("login_per_ip")?),
            login_account: Keyed::keyed(s.login_per_account.quota("login_per_account")?),
            register_ip: Keyed::keyed(s.register_per_ip.quota("register_per_ip")?),
            register_account: Keyed::keyed(s.register_per_account.quota("register_per_account")?),
            api_ip: Keyed::keyed(s.api_per_ip.quota("api_per_ip")?),
            connects: Keyed::keyed(s.ws_connects_per_account.quota("ws_connects_per_account")?),
            frames: Keyed::keyed(
                s.ws_frames_per_connection
                    .quota("ws_frames_per_connection")?,
            ),
            upload: Keyed::keyed(
                s.upload_bytes_per_account
                    .quota("upload_bytes_per_account")?,
            ),
            upload_burst: s.upload_bytes_per_account.burst,
            clock: DefaultClock::default(),
        })
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
    /// address in `Forwarded` / `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, c: &Client<'_>) -> Option<IpAddr> {
        let peer = c.peer?;
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let hops: Vec<IpAddr> = match (c.forwarded, c.x_forwarded_for) {
            (Some(f), _) => forwarded_for(f),
            (None, Some(x)) => x.split(',').filter_map(|h| parse_ip(h.trim())).collect(),
            (None, None) => Vec::new(),
        };
        Some(
            hops.into_iter()
                .rev()
                .find(|ip| !self.is_trusted(*ip))
                .unwrap_or(peer),
        )
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    fn check<K>(&self, l: &Keyed<K>, key: &K) -> Result<(), u64>
    where
        K: std::hash::Hash + Eq + Clone,
    {
        l.check_key(key)
            .map_err(|not_until| retry_secs(not_until.wait_time_from(self.clock.now())))
    }

    fn decide(&self, what: &Admission<'_>) -> Result<(), u64> {
        match what {
            Admission::Request { client, path } => {
                if path.starts_with("/api/") {
                    if let Some(ip) = self.client_ip(client) {
                        self.check(&self.api_ip, &ip)?;
                    }
                }
                Ok(())
            }
            Admission::Auth {
                client,
                step,
                username,
            } => {
                let (by_ip, by_account) = match step {
                    AuthStep::Prelogin => (&self.prelogin_ip, &self.prelogin_account),
                    AuthStep::Login => (&self.login_ip, &self.login_account),
                    AuthStep::Register => (&self.register_ip, &self.register_account),
                };
                if let Some(ip) = self.client_ip(client) {
                    self.check(by_ip, &ip)?;
                }
                self.check(by_account, &username.to_lowercase())
            }
            Admission::Connect { username } => self.check(&self.connects, &username.to_string()),
            Admission::Frame { connection, .. } => self.check(&self.frames, connection),
            Admission::UploadBytes { username, bytes } => {
                let n = u32::try_from(*bytes)
                    .unwrap_or(u32::MAX)
                    .clamp(1, self.upload_burst);
                let Some(n) = NonZeroU32::new(n) else {
                    return Ok(());
                };
                match self.upload.check_key_n(&username.to_string(), n) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(not_until)) => {
                        Err(retry_secs(not_until.wait_time_from(self.clock.now())))
                    }
                    Err(_) => Err(1),
                }
            }
        }
    }

    /// Drops keys idle longer than their window; returns how many keys remain.
    pub fn sweep(&self) -> usize {
        self.prelogin_ip.retain_recent();
        self.prelogin_account.retain_recent();
        self.login_ip.retain_recent();
        self.login_account.retain_recent();
        self.register_ip.retain_recent();
        self.register_account.retain_recent();
        self.api_ip.retain_recent();
        self.connects.retain_recent();
        self.frames.retain_recent();
        self.upload.retain_recent();
        self.api_ip.shrink_to_fit();
        self.prelogin_ip.shrink_to_fit();
        self.login_ip.shrink_to_fit();
        self.register_ip.shrink_to_fit();
        self.frames.shrink_to_fit();
        self.keys()
    }

    /// Keys held over all limiters.
    pub fn keys(&self) -> usize {
        self.prelogin_ip.len()
            + self.prelogin_account.len()
            + self.login_ip.len()
            + self.login_account.len()
            + self.register_ip.len()
            + self.register_account.len()
            + self.api_ip.len()
            + self.connects.len()
            + self.frames.len()
            + self.upload.len()
    }
}

impl Guard for Limiters {
    fn admit(&self, what: &Admission<'_>) -> Verdict {
        match self.decide(what) {
            Ok(()) => Verdict::Allow,
            Err(retry_after_secs) => Verdict::Refuse { retry_after_secs },
        }
    }
}

fn retry_secs(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `"[::1]"`, `::1`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest
            .split(']')
            .next()
            .and_then(|h| h.parse().ok())
            .map(canonical);
    }
    s.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| canonical(a.ip()))
}

/// The `for=` addresses of a `Forwarded` header (RFC 7239), in order.
fn forwarded_for(header: &str) -> Vec<IpAddr> {
    header
        .split(',')
        .flat_map(|element| element.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            if k.trim().eq_ignore_ascii_case("for") {
                parse_ip(v)
            } else {
                None
            }
        })
        .collect()
}

/// The plugin: its settings and, when enabled, its limiters.
pub struct RateLimit {
    limiters: Option<Arc<Limiters>>,
}

impl RateLimit {
    /// Builds the plugin from its table; an unknown key or bad value is an error naming it.
    /// When enabled, starts the sweeper thread (it ends once the plugin is dropped).
    pub fn new(cx: &PluginContext) -> Result<RateLimit, String> {
        let settings = Settings::from_value(&cx.config)?;
        if !settings.enabled {
            return Ok(RateLimit { limiters: None });
        }
        if settings.sweep_interval_secs == 0 {
            return Err("plugins.rate_limit.sweep_interval_secs: must be at least 1".into());
        }
        let limiters = Arc::new(Limiters::new(&settings)?);
        let weak: Weak<Limiters> = Arc::downgrade(&limiters);
        let every = Duration::from_secs(settings.sweep_interval_secs);
        std::thread::Builder::new()
            .name("rate-limit-sweep".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                match weak.upgrade() {
                    Some(l) => {
                        l.sweep();
                    }
                    None => break,
                }
            })
            .map_err(|e| format!("rate_limit: cannot start the sweeper: {e}"))?;
        Ok(RateLimit {
            limiters: Some(limiters),
        })
    }
}

impl Plugin for RateLimit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn enabled(&self) -> bool {
        self.limiters.is_some()
    }

    fn guard(&self) -> Option<Arc<dyn Guard>> {
        self.limiters.clone().map(|l| l as Arc<dyn Guard>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limiters(v: serde_json::Value) -> Limiters {
        Limiters::new(&Settings::from_value(&v).expect("settings")).expect("limiters")
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let err = Settings::from_value(&json!({ "login_per_ipp": 3 })).expect_err("must fail");
        assert!(err.contains("login_per_ipp"), "{err}");
    }

    #[test]
    fn one_field_of_a_limit_can_be_set_alone() {
        let s = Settings::from_value(&json!({ "login_per_ip": { "burst": 5 } })).expect("ok");
        assert_eq!(s.login_per_ip, Limit::new(5, 60));
        let err = Settings::from_value(&json!({ "login_per_ip": { "brust": 5 } }))
            .expect_err("must fail");
        assert!(err.contains("brust"), "{err}");
    }

    #[test]
    fn proxy_headers_count_only_from_trusted_peers() {
        let l = limiters(json!({ "trusted_proxies": ["10.0.0.0/8"] }));
        let spoof = Client {
            peer: Some("192.0.2.1".parse().expect("ip")),
            x_forwarded_for: Some("198.51.100.7"),
            forwarded: None,
        };
        assert_eq!(l.client_ip(&spoof), spoof.peer);
        let proxied = Client {
            peer: Some("10.1.2.3".parse().expect("ip")),
            x_forwarded_for: Some("198.51.100.7, 10.0.0.9"),
            forwarded: None,
        };
        assert_eq!(
            l.client_ip(&proxied),
            Some("198.51.100.7".parse().expect("ip"))
        );
        let rfc = Client {
            peer: Some("10.1.2.3".parse().expect("ip")),
            x_forwarded_for: None,
            forwarded: Some("for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.2"),
        };
        assert_eq!(l.client_ip(&rfc), Some("2001:db8::1".parse().expect("ip")));
    }

    #[test]
    fn upload_bytes_are_limited_per_account() {
        let l = limiters(json!({ "upload_bytes_per_account": { "burst": 1000, "per_secs": 10 } }));
        let up = |u: &'static str, bytes| Admission::UploadBytes { username: u, bytes };
        assert_eq!(l.admit(&up("ann", 800)), Verdict::Allow);
        assert!(matches!(l.admit(&up("ann", 800)), Verdict::Refuse { .. }));
        assert_eq!(l.admit(&up("bob", 800)), Verdict::Allow);
    }
}
