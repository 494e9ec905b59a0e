//! What ids, labels and topic levels may look like. Pure.

/// True for `[a-z0-9_-]{1,max}`: ids of cameras, zones, destinations, policies.
pub fn is_slug(id: &str, max: usize) -> bool {
    !id.is_empty()
        && id.len() <= max
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// True for a string usable as one MQTT topic level.
pub fn is_topic_level(level: &str) -> bool {
    !level.is_empty()
        && level.len() <= 64
        && level.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// True for a topic prefix: no wildcards, no leading or trailing `/`, at most 128 bytes.
pub fn is_topic_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && !prefix.starts_with('/')
        && !prefix.ends_with('/')
        && !prefix.contains(['+', '#', '\0'])
        && prefix.len() <= 128
}

/// True for a detection label: `[a-z0-9_ -]{1,64}`.
pub fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 64
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_ -".contains(&b))
}

/// True for `[A-Za-z0-9_-]{min,max}`: request ids, key ids, nonces, worker ids.
pub fn is_token(id: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// True for a worker id: `[A-Za-z0-9_-]{1,64}`.
pub fn is_worker_id(id: &str) -> bool {
    is_token(id, 1, 64)
}

/// The 32 bytes of a SHA-256 digest or HMAC written as 64 lowercase hex digits.
pub fn unhex_sha256(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..64).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_levels_labels_and_tokens() {
        assert!(is_slug("front_door-2", 32));
        assert!(!is_slug("Front", 32) || !is_slug("", 32));
        assert!(!is_slug(&"a".repeat(33), 32));
        assert!(is_topic_level("nvr-01.site"));
        assert!(!is_topic_level("a/b") && !is_topic_level("+") && !is_topic_level(""));
        assert!(is_topic_prefix("heldar/site") && !is_topic_prefix("/heldar") && !is_topic_prefix("a/#"));
        assert!(is_label("fire truck") && !is_label("Person"));
        assert!(is_token("nonce-0001", 8, 64) && !is_token("short", 8, 64) && !is_token("a b", 1, 64));
        assert!(is_worker_id("w1") && !is_worker_id(""));
    }
}
