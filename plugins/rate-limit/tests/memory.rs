//! The limiters' memory under a spray of 100,000 source addresses, measured as the resident
//! set of this process (its own test binary holding one test, so nothing else allocates
//! meanwhile): it grows with the spray and falls back once the keys are idle and swept.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use securechat_plugin_api::{Admission, Client, Guard, Verdict};
use securechat_plugin_rate_limit::{Limiters, Settings};

/// Resident set size in KiB, from /proc/self/statm (pages of 4 KiB on the Linux targets).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages");
    pages * 4
}

#[test]
fn memory_grown_by_a_spray_of_100000_addresses_is_given_back_once_they_are_idle() {
    let settings = Settings::from_value(&serde_json::json!({
        "api_per_ip": { "burst": 10, "per_secs": 1 }
    }))
    .expect("settings");
    let limiters = Limiters::new(&settings).expect("limiters");
    let before = rss_kib();
    for i in 0..100_000u32 {
        let client = Client {
            peer: Some(IpAddr::from(Ipv4Addr::from(0x0a00_0000 + i))),
            ..Client::default()
        };
        let what = Admission::Request {
            client,
            path: "/api/me",
        };
        assert_eq!(limiters.admit(&what), Verdict::Allow);
    }
    let sprayed = rss_kib();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(limiters.sweep(), 0, "every idle key is dropped");
    let swept = rss_kib();
    println!("limiter RSS: before {before} KiB, after 100,000 addresses {sprayed} KiB, after the sweep {swept} KiB");
    let grown = sprayed.saturating_sub(before);
    assert!(
        grown >= 1024,
        "the spray must be visible to the measure (grew {grown} KiB)"
    );
    let kept = swept.saturating_sub(before);
    assert!(
        kept * 4 <= grown,
        "the sweep must give back at least three quarters of what the spray took: grew {grown} KiB, kept {kept} KiB"
    );
}
