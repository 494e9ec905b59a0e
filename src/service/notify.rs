//! systemd's notify protocol (sd_notify(3)): datagrams to `$NOTIFY_SOCKET`.
//! `READY=1` once the index is open and the MQTT session started, `STATUS=`
//! lines, `WATCHDOG=1` only while the parts answer, `STOPPING=1` on the way
//! out. Without `NOTIFY_SOCKET` nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where the notifications go.
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    /// Half of `WATCHDOG_USEC`, when systemd asks for pings.
    pub watchdog_every: Option<Duration>,
}

/// `NOTIFY_SOCKET`'s address: a path, or an abstract name written `@name`.
fn address(text: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    match text.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => std::os::unix::net::SocketAddr::from_pathname(text),
    }
}

/// Half the watchdog interval of `WATCHDOG_USEC` (when `WATCHDOG_PID` is absent or ours).
pub fn watchdog_every(usec: Option<&str>, pid: Option<&str>) -> Option<Duration> {
    if pid.is_some_and(|p| p.trim() != std::process::id().to_string()) {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

impl Notifier {
    /// The notifier systemd set up through the environment, or one that sends nothing.
    pub fn from_env() -> Self {
        let socket = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
            let addr =
                address(&path).map_err(|e| tracing::warn!(socket = %path, error = %e, "bad NOTIFY_SOCKET")).ok()?;
            let socket = UnixDatagram::unbound().ok()?;
            Some((socket, addr))
        });
        let every = watchdog_every(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
        );
        Self { socket, watchdog_every: every.filter(|_| std::env::var_os("NOTIFY_SOCKET").is_some()) }
    }

    /// Sends `message` (`KEY=value` lines); a failure is logged, never fatal.
    pub fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.socket else { return };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            tracing::debug!(error = %e, "notify socket");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_watchdog_interval_for_this_process_only() {
        assert_eq!(watchdog_every(Some("2000000"), None), Some(Duration::from_secs(1)));
        let me = std::process::id().to_string();
        assert_eq!(watchdog_every(Some("30000000"), Some(&me)), Some(Duration::from_secs(15)));
        assert_eq!(watchdog_every(Some("30000000"), Some("1")), None, "another process's watchdog");
        assert_eq!(watchdog_every(Some("0"), None), None);
        assert_eq!(watchdog_every(None, None), None);
    }

    #[test]
    fn sends_datagrams_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("heldar-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), address(path.to_str().unwrap()).unwrap())),
            watchdog_every: None,
        };
        notifier.send("READY=1\nSTATUS=starting");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=starting");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
