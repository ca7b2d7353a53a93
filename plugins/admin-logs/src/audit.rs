//! Owns the audit chain's rule (docs/PROTOCOL.md §12): how an entry's hash is computed
//! from its fields and its predecessor's hash, and how a stored chain is verified.
//!
//! Invariant: the encoding is length-prefixed and typed, so no two different entries hash
//! the same bytes; the first entry's `prev_hash` is 32 zero bytes.

use securechat_plugin_api::admin::AuditEntry;

/// The `prev_hash` of the first entry.
pub const GENESIS: [u8; 32] = [0u8; 32];

const DOMAIN: &[u8] = b"securechat/v1/audit";

fn put_bytes(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// BLAKE3 over the length-prefixed encoding of (seq, at, actor, action, target, detail,
/// prev_hash); `entry.hash` itself is ignored.
pub fn entry_hash(entry: &AuditEntry) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    put_bytes(&mut h, DOMAIN);
    h.update(&entry.seq.to_be_bytes());
    h.update(&entry.at.to_be_bytes());
    put_bytes(&mut h, entry.actor.as_bytes());
    put_bytes(&mut h, entry.action.as_bytes());
    match &entry.target {
        None => {
            h.update(&[0]);
        }
        Some(t) => {
            h.update(&[1]);
            put_bytes(&mut h, t.as_bytes());
        }
    }
    put_bytes(&mut h, entry.detail.as_bytes());
    put_bytes(&mut h, &entry.prev_hash);
    h.finalize().as_bytes().to_vec()
}

/// The result of checking a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Ok {
        entries: usize,
    },
    Broken {
        entries: usize,
        first_bad_seq: i64,
        reason: &'static str,
    },
}

/// Walks `entries` (ascending seq, as stored) and names the first entry that breaks the
/// chain: a seq that is not the previous one plus one (a deleted or reordered row), a
/// `prev_hash` that is not the previous entry's hash, or a hash that does not match the
/// entry's own fields (an edited row).
pub fn verify(entries: &[AuditEntry]) -> Verification {
    let mut prev_hash: &[u8] = &GENESIS;
    for (expected_seq, e) in (1i64..).zip(entries) {
        let broken = |reason| Verification::Broken {
            entries: entries.len(),
            first_bad_seq: e.seq,
            reason,
        };
        if e.seq != expected_seq {
            return Verification::Broken {
                entries: entries.len(),
                first_bad_seq: e.seq.min(expected_seq),
                reason: "seq_gap",
            };
        }
        if e.prev_hash != prev_hash {
            return broken("prev_hash_mismatch");
        }
        if entry_hash(e) != e.hash {
            return broken("hash_mismatch");
        }
        prev_hash = &e.hash;
    }
    Verification::Ok {
        entries: entries.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for seq in 1..=n {
            let mut e = AuditEntry {
                seq,
                at: 1000 + seq,
                actor: "root".into(),
                action: "messages.list".into(),
                target: (seq % 2 == 0).then(|| "bob".into()),
                detail: "{}".into(),
                prev_hash: out.last().map_or(GENESIS.to_vec(), |p| p.hash.clone()),
                hash: Vec::new(),
            };
            e.hash = entry_hash(&e);
            out.push(e);
        }
        out
    }

    #[test]
    fn an_untouched_chain_verifies() {
        assert_eq!(verify(&chain(5)), Verification::Ok { entries: 5 });
        assert_eq!(verify(&[]), Verification::Ok { entries: 0 });
    }

    #[test]
    fn an_edited_field_is_named_by_its_seq() {
        let mut c = chain(5);
        c[2].detail = "{\"sender\":\"eve\"}".into();
        assert!(matches!(
            verify(&c),
            Verification::Broken {
                first_bad_seq: 3,
                reason: "hash_mismatch",
                ..
            }
        ));
    }

    #[test]
    fn a_deleted_row_is_named_where_the_gap_is() {
        let mut c = chain(5);
        c.remove(1);
        assert!(matches!(
            verify(&c),
            Verification::Broken {
                first_bad_seq: 2,
                reason: "seq_gap",
                ..
            }
        ));
    }

    #[test]
    fn a_deleted_last_row_with_renumbering_still_breaks_the_links() {
        let mut c = chain(4);
        c.remove(1);
        for (i, e) in c.iter_mut().enumerate() {
            e.seq = i as i64 + 1;
        }
        assert!(matches!(
            verify(&c),
            Verification::Broken {
                first_bad_seq: 2,
                ..
            }
        ));
    }

    #[test]
    fn two_swapped_rows_are_named_at_the_first_of_them() {
        let mut c = chain(5);
        let (a, b) = (c[1].clone(), c[3].clone());
        c[1] = AuditEntry { seq: 2, ..b };
        c[3] = AuditEntry { seq: 4, ..a };
        assert!(matches!(
            verify(&c),
            Verification::Broken {
                first_bad_seq: 2,
                ..
            }
        ));
    }

    #[test]
    fn a_null_target_and_an_empty_target_hash_differently() {
        let mut a = chain(1).remove(0);
        let h = entry_hash(&a);
        a.target = Some(String::new());
        assert_ne!(entry_hash(&a), h);
    }
}
