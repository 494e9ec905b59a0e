//! Keeping secrets out of logs: scrubbing them from command lines and output.

/// Percent-encodes what may not appear raw in a URL's userinfo.
pub fn encode_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Replaces every occurrence of each secret (raw and URL-encoded) in `text` with `***`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), "***");
        let encoded = encode_userinfo(secret);
        if encoded != *secret {
            out = out.replace(&encoded, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_raw_and_encoded_secrets() {
        let secrets = vec!["p@ss".to_string()];
        assert_eq!(scrub("rtsp://u:p%40ss@h failed; p@ss", &secrets), "rtsp://u:***@h failed; ***");
        assert_eq!(scrub("nothing here", &[String::new()]), "nothing here");
    }

    #[test]
    fn encodes_reserved_bytes() {
        assert_eq!(encode_userinfo("p@ss/w:rd"), "p%40ss%2Fw%3Ard");
    }
}
