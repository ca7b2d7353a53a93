//! The admin-logs plugin: the admin console's API over ciphertext and routing metadata,
//! the hash-chained audit log of every admin read and action, and verifiable abuse reports.
//!
//! Invariant: nothing here can decrypt a message on its own; the only key it ever holds is
//! the one message key a reporter chose to disclose, for the length of one check.

pub mod report;
