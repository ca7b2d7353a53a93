//! Owns the text the `securechat jobs` commands print: a table of jobs, one per line.

use std::fmt::Write as _;

use super::types::JobRecord;

/// A fixed-width table of `jobs` (id, queue, kind, state, attempts, times, last error).
pub fn render_list(jobs: &[JobRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8}  {:<12} {:<24} {:<9} {:>7}  {:<24} LAST ERROR",
        "ID", "QUEUE", "KIND", "STATE", "ATTEMPT", "RUN AT / FINISHED (UTC)"
    );
    for j in jobs {
        let when = j.finished_at.unwrap_or(j.run_at);
        let error = j.last_error.as_deref().unwrap_or("");
        let error: String = error.chars().take(80).collect();
        let _ = writeln!(
            out,
            "{:>8}  {:<12} {:<24} {:<9} {:>7}  {:<24} {}",
            j.id,
            j.queue,
            j.kind,
            j.state,
            format!("{}/{}", j.attempt, j.max_attempts),
            utc(when),
            error.replace('\n', " ")
        );
    }
    if jobs.is_empty() {
        out.push_str("(no jobs)\n");
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS.mmm` for ms since the epoch (proleptic Gregorian, UTC).
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(super::utc(1_764_100_000_123), "2025-11-25 19:46:40.123");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00.000");
    }
}
