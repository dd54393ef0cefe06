//! How deeply a JSON request body nests, found by one pass over its bytes before it is parsed.
//!
//! No request Tessera takes nests deeper than a few levels (a schema's labels, attributes and
//! options; an annotation's shapes and points), so bodies deeper than [`MAX_DEPTH`] are refused
//! with a message that says so, before any parser or recursive check walks them.

/// The deepest nesting of arrays and objects a JSON request may have.
pub const MAX_DEPTH: usize = 32;

/// Whether `body` nests arrays and objects at most `max` deep (brackets inside strings do not
/// count; the JSON need not be valid, the parser judges that afterwards).
pub fn within(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_outside_strings() {
        assert!(within(br#"{"a":[[1,2],[3]],"b":{"c":"[[[[["}}"#, 3));
        assert!(!within(br#"{"a":[[1,2],[3]]}"#, 2));
        assert!(within(br#"["\"[[[", "\\"]"#, 1));
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(!within(deep.as_bytes(), MAX_DEPTH));
    }
}
