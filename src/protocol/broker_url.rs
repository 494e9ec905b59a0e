//! The `[mqtt] url`: `mqtt://host[:port]` or `mqtts://host[:port]`.

/// A parsed broker address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS (`mqtts://`).
    pub tls: bool,
}

impl BrokerUrl {
    /// Parses a broker URL; the error says what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(format!("{url:?} must start with mqtt:// or mqtts://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{url:?} must be only scheme, host and port (credentials go in username/password_file)"
            ));
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| format!("{url:?} has an unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{url:?} has a bad port {port:?}"))?,
            None if tls => 8883,
            None => 1883,
        };
        Ok(Self { host: host.to_string(), port, tls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_tls_and_ipv6() {
        assert_eq!(
            BrokerUrl::parse("mqtt://127.0.0.1:1884"),
            Ok(BrokerUrl { host: "127.0.0.1".into(), port: 1884, tls: false })
        );
        assert_eq!(BrokerUrl::parse("mqtts://broker.example").map(|u| (u.port, u.tls)), Ok((8883, true)));
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:1883").map(|u| u.host), Ok("::1".to_string()));
        assert_eq!(BrokerUrl::parse("mqtt://localhost/").map(|u| u.port), Ok(1883));
    }

    #[test]
    fn rejects_other_schemes_paths_and_bad_ports() {
        for bad in
            ["http://x", "mqtt://", "mqtt://h:0", "mqtt://h:99999", "mqtt://u:p@h", "mqtt://h/topic", "mqtt://[::1"]
        {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
