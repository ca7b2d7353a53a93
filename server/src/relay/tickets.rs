//! Owns WebSocket tickets: short-lived, single-use secrets handed out for an access token,
//! because a browser cannot put an Authorization header on a WebSocket.
//!
//! Invariants: a ticket is redeemed at most once; an expired ticket is never honoured; a
//! ticket names the session it was issued for, so the socket it opens ends with that
//! session; the tickets live only in memory (a restart voids them, which costs a client
//! one retry).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::b64;

/// Whom a ticket was issued to: the user and the session of the access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub user_id: i64,
    pub username: String,
    pub session_id: String,
}

struct Entry {
    holder: Holder,
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

    /// A fresh ticket for the holder (a user, in one session).
    pub fn issue(&self, holder: Holder) -> String {
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
                holder,
                expires: now + self.ttl,
            },
        );
        ticket
    }

    /// Redeems a ticket: whom it was issued to, once, if it has not expired.
    pub fn redeem(&self, ticket: &str) -> Option<Holder> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.remove(ticket)?;
        (entry.expires > Instant::now()).then_some(entry.holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Holder {
        Holder {
            user_id: 1,
            username: "alice".into(),
            session_id: "s1".into(),
        }
    }

    #[test]
    fn a_ticket_is_good_once_and_not_after_it_expires() {
        let t = Tickets::new(Duration::from_secs(30));
        let a = t.issue(alice());
        assert_eq!(t.redeem(&a), Some(alice()));
        assert_eq!(t.redeem(&a), None);
        assert_eq!(t.redeem("made-up"), None);
        let short = Tickets::new(Duration::from_millis(1));
        let b = short.issue(alice());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.redeem(&b), None);
    }
}
