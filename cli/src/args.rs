//! Value parsers the commands' arguments share.

/// A count of at least 1.
pub(crate) fn positive(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("not a positive integer ({e})")),
    }
}
