//! Owns the CSV exports' text: every cell quoted, and a cell a spreadsheet would run as a
//! formula (starting with `=`, `+`, `-`, `@`, TAB or CR) prefixed with `'`.
//!
//! Invariant: whatever a cell holds, it stays one cell and is never evaluated.

/// One cell, quoted, formula-safe.
pub fn cell(text: &str) -> String {
    let risky = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let mut out = String::with_capacity(text.len() + 3);
    out.push('"');
    if risky {
        out.push('\'');
    }
    out.push_str(&text.replace('"', "\"\""));
    out.push('"');
    out
}

/// One line of cells, CRLF-terminated (RFC 4180).
pub fn line<S: AsRef<str>>(cells: &[S]) -> String {
    let mut out = cells
        .iter()
        .map(|c| cell(c.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formula_is_prefixed_and_quoted() {
        assert_eq!(cell("=cmd|' /C calc'!A0"), "\"'=cmd|' /C calc'!A0\"");
        for lead in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(cell(lead).starts_with("\"'"), "{lead:?}");
        }
    }

    #[test]
    fn quotes_are_doubled_and_plain_text_is_kept() {
        assert_eq!(cell("a\"b"), "\"a\"\"b\"");
        assert_eq!(cell("alice"), "\"alice\"");
        assert_eq!(cell(""), "\"\"");
    }

    #[test]
    fn a_line_joins_cells_and_ends_with_crlf() {
        assert_eq!(line(&["a", "=b"]), "\"a\",\"'=b\"\r\n");
    }
}
