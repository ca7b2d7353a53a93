//! Owns WebSocket tickets: short-lived, single-use secrets handed out for an access token,
//! because a browser cannot put an Authorization header on a WebSocket.
//!
//! Invariants: a ticket is redeemed at most once; an expired ticket is never honoured; the
//! tickets live only in memory (a restart voids them, which costs a client one retry).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::b64;

struct Entry {
    user_id: i64,
    username: String,
    expires: Instant,
}

pub struct Tickets {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Tickets {
    pub fn new(ttl: Duration) -> Tickets {
        Tickets {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh ticket for the user.
    pub fn issue(&self, user_id: i64, username: &str) -> String {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let ticket = b64::encode(raw);
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= 1024 && entries.len().is_power_of_two() {
            entries.retain(|_, e| e.expires > now);
        }
        entries.insert(
            ticket.clone(),
            Entry {
                user_id,
                username: username.to_owned(),
                expires: now + self.ttl,
            },
        );
        ticket
    }

    /// Redeems a ticket: the user it was issued to, once, if it has not expired.
    pub fn redeem(&self, ticket: &str) -> Option<(i64, String)> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.remove(ticket)?;
        (entry.expires > Instant::now()).then_some((entry.user_id, entry.username))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_good_once_and_not_after_it_expires() {
        let t = Tickets::new(Duration::from_secs(30));
        let a = t.issue(1, "alice");
        assert_eq!(t.redeem(&a), Some((1, "alice".into())));
        assert_eq!(t.redeem(&a), None);
        assert_eq!(t.redeem("made-up"), None);
        let short = Tickets::new(Duration::from_millis(1));
        let b = short.issue(1, "alice");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.redeem(&b), None);
    }
}
