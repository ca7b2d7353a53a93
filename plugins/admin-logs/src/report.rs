//! Checks an abuse report: the disclosed message key opens the stored ciphertext to the
//! reported plaintext, and the stored envelope's signature verifies under the sender's key.
