//! The node on a mosquitto TLS listener with a password: `mqtts://`,
//! `ca_file`, `username` and `password_file` as an installer sets them up.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Broker, Node, TempDir, Watcher};

/// Makes a CA and a server certificate for localhost/127.0.0.1 with openssl(1).
fn make_certificates(dir: &Path) {
    let openssl = support::system_binary("openssl", "openssl");
    let run = |args: &[&str]| {
        let out = Command::new(&openssl).args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=heldar test CA"],
    ]
    .concat());
    run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("san");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

/// A broker with a plain anonymous listener for the watcher and a TLS listener with a password for the node.
fn tls_broker(dir: &TempDir, user: &str, password: &str) -> (Broker, u16) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    make_certificates(&certs);
    let passwd = certs.join("passwd");
    let status = Command::new(support::system_binary("mosquitto_passwd", "mosquitto"))
        .args(["-b", "-c"])
        .arg(&passwd)
        .args([user, password])
        .status()
        .expect("mosquitto_passwd");
    assert!(status.success());
    let tls_port = support::free_port();
    let extra = format!(
        "listener {tls_port} 127.0.0.1\ncafile {c}/ca.pem\ncertfile {c}/server.pem\nkeyfile {c}/server.key\n\
         allow_anonymous false\npassword_file {p}\n",
        c = certs.display(),
        p = passwd.display()
    );
    (Broker::start_with(&dir.join("broker"), support::free_port(), &extra), tls_port)
}

fn tls_node(dir: &TempDir, tls_port: u16, id: &str, password: &str) -> Node {
    tls_node_with(dir, tls_port, id, password, "ca_file = \"certs/ca.pem\"\n")
}

fn tls_node_with(dir: &TempDir, tls_port: u16, id: &str, password: &str, extra: &str) -> Node {
    std::fs::write(dir.join("mqtt.pass"), format!("{password}\n")).expect("password file");
    Node::configure(
        &dir.0,
        id,
        &format!("mqtts://localhost:{tls_port}"),
        &format!("username = \"{id}\"\npassword_file = \"mqtt.pass\"\n{extra}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ca_file_the_system_roots_are_trusted() {
    let dir = TempDir::new("tls-system");
    let (broker, tls_port) = tls_broker(&dir, "tls3", "pw3");
    let mut watcher = Watcher::connect(broker.port, "watch-tls-system", true, &["heldar/tls3/status"]).await;
    let mut node = tls_node_with(&dir, tls_port, "tls3", "pw3", "");
    // rustls-native-certs reads SSL_CERT_FILE: here the system's roots are just the test CA.
    let ca = dir.join("certs/ca.pem");
    node.start_with_env(&[], &[("SSL_CERT_FILE", ca.to_str().expect("utf8"))]);
    let status = watcher.next_on("heldar/tls3/status", Duration::from_secs(5)).await.expect("online over TLS");
    assert_eq!(status.text(), "online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_over_tls_with_ca_file_and_password_file() {
    let dir = TempDir::new("tls");
    let (broker, tls_port) = tls_broker(&dir, "tls1", "s3cret pass");
    let mut watcher = Watcher::connect(broker.port, "watch-tls", true, &["heldar/tls1/status"]).await;
    let mut node = tls_node(&dir, tls_port, "tls1", "s3cret pass");
    node.start(&[]);
    let status = watcher.next_on("heldar/tls1/status", Duration::from_secs(5)).await.expect("online over TLS");
    assert_eq!(status.text(), "online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_logged_and_retried_without_exiting() {
    let dir = TempDir::new("tls-bad");
    let (broker, tls_port) = tls_broker(&dir, "tls2", "right");
    let mut watcher = Watcher::connect(broker.port, "watch-tls-bad", true, &["heldar/tls2/status"]).await;
    let mut node = tls_node(&dir, tls_port, "tls2", "wrong");
    node.start(&[]);
    assert!(watcher.next_on("heldar/tls2/status", Duration::from_secs(3)).await.is_none(), "must not get online");
    let log = node.log();
    assert!(log.contains("broker unreachable") && log.contains("refused"), "{log}");
    assert!(!log.contains("wrong"), "the password leaked into the log:\n{log}");
    let status = node.terminate(Duration::from_secs(10));
    assert!(status.success(), "still running and stops cleanly: {status}");
}
