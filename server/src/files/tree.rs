//! Owns resumable BLAKE3: the root of an upload's bytes computed as they arrive, with a state
//! small enough to keep in the upload's row, so that a restart (or the next PATCH) never
//! re-reads more than the unfinished last subtree of [`SUBTREE_LEN`] bytes.
//!
//! How: the input is cut into subtrees of 1 MiB (a power of two of BLAKE3 chunks, so each
//! is a valid BLAKE3 subtree). The chaining values of completed subtrees are kept on a
//! stack merged like BLAKE3's own chunk stack (a full subtree is folded in only once more
//! input follows it, so it never has to become the root); the unfinished subtree is hashed by a `blake3::Hasher` placed at its offset with
//! `hazmat::HasherExt::set_input_offset`. [`TreeState`] is the stack and the count of
//! completed subtrees; the bytes of the unfinished subtree are re-fed from the blob when a
//! [`TreeHasher`] is rebuilt. The property tests hold the result equal to `blake3::hash`.

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};

/// Bytes per subtree whose chaining value is kept: 1 MiB (1024 BLAKE3 chunks).
pub const SUBTREE_LEN: u64 = 1 << 20;

/// What survives between PATCHes and restarts: the completed subtrees' chaining values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeState {
    /// Subtrees of `SUBTREE_LEN` bytes whose chaining values are folded into `stack`.
    pub completed: u64,
    /// Chaining values of the largest complete subtrees, left to right:
    /// `stack.len() == completed.count_ones()`.
    pub stack: Vec<ChainingValue>,
}

impl TreeState {
    /// Where the unfinished subtree starts: the bytes from here on are re-fed after a restart.
    pub fn partial_start(&self) -> u64 {
        self.completed * SUBTREE_LEN
    }

    /// The state as stored in the upload row: `completed` (u64 big-endian), then the values.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.stack.len());
        out.extend_from_slice(&self.completed.to_be_bytes());
        for cv in &self.stack {
            out.extend_from_slice(cv);
        }
        out
    }

    /// Reads a stored state back; `None` if it is not one [`TreeState::to_bytes`] wrote.
    pub fn from_bytes(b: &[u8]) -> Option<TreeState> {
        if b.len() < 8 || !(b.len() - 8).is_multiple_of(32) {
            return None;
        }
        let completed = u64::from_be_bytes(b[..8].try_into().ok()?);
        let stack: Vec<ChainingValue> = b[8..]
            .chunks_exact(32)
            .map(|c| c.try_into().ok())
            .collect::<Option<_>>()?;
        if stack.len() != completed.count_ones() as usize {
            return None;
        }
        Some(TreeState { completed, stack })
    }
}

/// A BLAKE3 hasher that can stop at any byte and resume from a [`TreeState`] plus the
/// bytes of its unfinished subtree.
#[derive(Clone)]
pub struct TreeHasher {
    state: TreeState,
    partial: blake3::Hasher,
    partial_len: u64,
}

impl Default for TreeHasher {
    fn default() -> Self {
        TreeHasher::resume(TreeState::default())
    }
}

impl TreeHasher {
    pub fn new() -> TreeHasher {
        TreeHasher::default()
    }

    /// Resumes from `state`; feed it the bytes from `state.partial_start()` on next.
    pub fn resume(state: TreeState) -> TreeHasher {
        let mut partial = blake3::Hasher::new();
        partial.set_input_offset(state.partial_start());
        TreeHasher {
            state,
            partial,
            partial_len: 0,
        }
    }

    /// Bytes hashed so far (of the whole input).
    pub fn len(&self) -> u64 {
        self.state.partial_start() + self.partial_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.partial_len == SUBTREE_LEN {
                // More input follows a full subtree: it is not the root, fold it in.
                let cv = self.partial.finalize_non_root();
                self.push(cv);
                self.partial = blake3::Hasher::new();
                self.partial.set_input_offset(self.state.partial_start());
                self.partial_len = 0;
            }
            let room = (SUBTREE_LEN - self.partial_len) as usize;
            let take = room.min(data.len());
            self.partial.update(&data[..take]);
            self.partial_len += take as u64;
            data = &data[take..];
        }
    }

    fn push(&mut self, mut cv: ChainingValue) {
        // BLAKE3's reference merge: the new subtree completes one parent per trailing zero
        // bit of the new count. More input follows it, so none of these parents is the root.
        self.state.completed += 1;
        let mut total = self.state.completed;
        while total & 1 == 0 {
            match self.state.stack.pop() {
                Some(left) => cv = merge_subtrees_non_root(&left, &cv, Mode::Hash),
                None => break,
            }
            total >>= 1;
        }
        self.state.stack.push(cv);
    }

    /// The state to store; the unfinished subtree's bytes (from `partial_start`) stay in the blob.
    pub fn state(&self) -> &TreeState {
        &self.state
    }

    /// The BLAKE3 hash of everything fed so far.
    pub fn root(&self) -> blake3::Hash {
        if self.state.completed == 0 {
            return self.partial.finalize();
        }
        let mut right = self.partial.finalize_non_root();
        let mut lefts = self.state.stack.iter().rev().peekable();
        while let Some(left) = lefts.next() {
            if lefts.peek().is_none() {
                return merge_subtrees_root(left, &right, Mode::Hash);
            }
            right = merge_subtrees_non_root(left, &right, Mode::Hash);
        }
        // Unreachable: completed > 0 means the stack is not empty.
        self.partial.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0] ^ seed)
            .collect()
    }

    /// Hashes `bytes` fed in the pieces cut at `cuts`, "restarting" (state to bytes and
    /// back, re-feeding the unfinished subtree) at each cut.
    fn resumable_root(bytes: &[u8], cuts: &[usize]) -> blake3::Hash {
        let mut h = TreeHasher::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(at, bytes.len());
            h.update(&bytes[at..cut]);
            at = cut;
            let stored = h.state().to_bytes();
            let state = TreeState::from_bytes(&stored).expect("state round-trips");
            let start = state.partial_start() as usize;
            h = TreeHasher::resume(state);
            h.update(&bytes[start..at]);
            assert_eq!(h.len(), at as u64);
        }
        h.root()
    }

    #[test]
    fn the_root_equals_blake3_hash_on_the_edge_sizes() {
        let mib = SUBTREE_LEN as usize;
        for len in [
            0,
            1,
            1023,
            1024,
            1025,
            mib - 1,
            mib,
            mib + 1,
            2 * mib,
            2 * mib + 1,
            3 * mib + 5,
            4 * mib,
            5 * mib + 1023,
        ] {
            let d = data(len, 7);
            let mut h = TreeHasher::new();
            h.update(&d);
            assert_eq!(h.root(), blake3::hash(&d), "len {len}");
            assert_eq!(
                resumable_root(&d, &[len / 3, len / 2]),
                blake3::hash(&d),
                "len {len}"
            );
        }
    }

    #[test]
    fn a_state_that_was_not_written_by_to_bytes_is_refused() {
        assert!(TreeState::from_bytes(&[]).is_none());
        assert!(TreeState::from_bytes(&[0; 9]).is_none());
        // completed = 1 needs one chaining value.
        assert!(TreeState::from_bytes(&1u64.to_be_bytes()).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn the_root_equals_blake3_hash_for_any_size_and_restarts(
            len in prop_oneof![0usize..4096, 0usize..(6 << 20)],
            cuts in proptest::collection::vec(0usize..(6 << 20), 0..6),
            seed in any::<u8>(),
        ) {
            let d = data(len, seed);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(len)).collect();
            cuts.sort_unstable();
            prop_assert_eq!(resumable_root(&d, &cuts), blake3::hash(&d));
        }
    }
}
