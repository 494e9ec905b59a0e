//! One process owns a data directory: a second `run` on it is refused and names
//! the first, and the one-shot `sweep` does not run beside a running service
//! (it says how to ask the service instead).

mod support;

use std::process::Command;
use std::time::Duration;
use support::{Broker, Node, TempDir};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_second_process_on_the_same_data_dir_is_refused_and_names_the_first() {
    let dir = TempDir::new("one-writer");
    let broker = Broker::start(&dir.join("broker"));
    let mut node = Node::configure(&dir.0, "solo", &broker.url(), "");
    node.start(&[]);
    support::wait_for(10 * SECOND, "the node to hold its data directory", || node.index().exists());
    let pid = node.pid();
    let config = dir.join("config.toml");
    let second = Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
        .args(["run", "-c"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .output()
        .expect("second run");
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("pid {pid}")), "the refusal names the running process: {said}");
    let sweep = Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
        .args(["sweep", "-c"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .output()
        .expect("sweep");
    let said = String::from_utf8_lossy(&sweep.stderr);
    assert_eq!(sweep.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("pid {pid}")) && said.contains("heldar-edge call"), "{said}");
    assert!(node.terminate(15 * SECOND).success());
    // Once the service is gone, the one-shot command runs alone.
    let sweep =
        Command::new(env!("CARGO_BIN_EXE_heldar-edge")).args(["sweep", "-c"]).arg(&config).output().expect("sweep");
    assert!(sweep.status.success(), "{}", String::from_utf8_lossy(&sweep.stderr));
}
