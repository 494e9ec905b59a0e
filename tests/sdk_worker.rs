//! The Python SDK's example worker against the real service: it takes the
//! frames of a camera showing a moving ball and answers with detections the
//! node accepts.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Broker, Message, Node, RtspCamera, TempDir, Watcher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_worker_gets_frames_and_its_detections_are_accepted() {
    let dir = TempDir::new("sdk-worker");
    let broker = Broker::start(&dir.join("broker"));
    let camera = RtspCamera::start();
    let toml = format!(
        "\n[[camera]]\nid = \"ball\"\nsource = \"{}\"\nsegment_s = 4\nsample_fps = 3\nsample_width = 320\n",
        camera.url()
    );
    let mut node = Node::configure(&dir.0, "py", &broker.url(), &toml);
    let mut watcher = Watcher::connect(
        broker.port,
        "watch-sdk",
        true,
        &["heldar/py/stats", "heldar/py/errors", "heldar/py/events/#"],
    )
    .await;
    node.start(&[]);

    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/python");
    let python = support::system_binary("python3", "python3");
    let mut worker = Command::new(python)
        .arg(format!("{sdk}/examples/moving_object.py"))
        .args(["--node", "py", "--port", &broker.port.to_string(), "--worker-id", "motion"])
        .env("PYTHONPATH", sdk)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("worker.log")).expect("log"))
        .spawn()
        .expect("python3 examples/moving_object.py");
    let messages = watcher
        .collect(45 * Duration::from_secs(1), |m| {
            m.iter()
                .any(|m| m.topic.ends_with("/stats") && m.json()["detections"]["accepted"].as_u64().unwrap_or(0) >= 5)
        })
        .await;
    let _ = Command::new("kill").arg(worker.id().to_string()).status();
    let exited = worker.wait().expect("worker exit");
    let log = std::fs::read_to_string(dir.join("worker.log")).unwrap_or_default();

    let stats = messages.iter().rev().find(|m| m.topic.ends_with("/stats")).map(Message::json).expect("stats");
    assert!(
        stats["detections"]["accepted"].as_u64().unwrap_or(0) >= 5,
        "detections accepted: {stats}\nworker log:\n{log}"
    );
    assert_eq!(stats["detections"]["latest"]["ball"]["worker"], "motion", "{stats}");
    let errors: Vec<String> = messages.iter().filter(|m| m.topic.ends_with("/errors")).map(Message::text).collect();
    assert!(errors.is_empty(), "the node refused the worker's messages: {errors:?}");
    assert!(messages.iter().any(|m| m.topic.ends_with("/_node/worker_online")), "worker_online event");
    let after =
        watcher.collect(5 * Duration::from_secs(1), |m| m.iter().any(|m| m.topic.ends_with("/worker_offline"))).await;
    assert!(after.iter().any(|m| m.topic.ends_with("/_node/worker_offline")), "worker_offline when it stops");
    assert!(exited.success() || exited.code().is_none(), "worker exit {exited}");
    assert!(log.contains("online"), "{log}");
}
