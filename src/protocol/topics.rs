//! Topic names of the MQTT contract under `P = <topic_prefix>/<node_id>`.

/// Builds the node's topics.
#[derive(Clone, Debug)]
pub struct Topics {
    root: String,
}

impl Topics {
    /// Topics under `root` (`P`).
    pub fn new(root: impl Into<String>) -> Self {
        Self { root: root.into() }
    }

    /// `P`
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `P/status`: `online` / `offline`, retained.
    pub fn status(&self) -> String {
        format!("{}/status", self.root)
    }

    /// `P/stats`: periodic statistics.
    pub fn stats(&self) -> String {
        format!("{}/stats", self.root)
    }

    /// `P/events/<level>/<type>`.
    pub fn event(&self, level: &str, kind: &str) -> String {
        format!("{}/events/{level}/{kind}", self.root)
    }

    /// `P/cameras/<cam>/state`: a camera's retained state.
    pub fn camera_state(&self, camera: &str) -> String {
        format!("{}/cameras/{camera}/state", self.root)
    }

    /// `P/tasks`: what is offered to workers, retained.
    pub fn tasks(&self) -> String {
        format!("{}/tasks", self.root)
    }

    /// `P/frames/<cam>`: sampled frames.
    pub fn frames(&self, camera: &str) -> String {
        format!("{}/frames/{camera}", self.root)
    }

    /// `P/zones/<cam>/<zone>/<label>`: a zone's retained count.
    pub fn zone_count(&self, camera: &str, zone: &str, label: &str) -> String {
        format!("{}/zones/{camera}/{zone}/{label}", self.root)
    }

    /// `P/objects/<cam>/<label>`: objects of a label in the camera's whole frame, retained.
    pub fn objects(&self, camera: &str, label: &str) -> String {
        format!("{}/objects/{camera}/{label}", self.root)
    }

    /// `P/errors`: refused incoming messages.
    pub fn errors(&self) -> String {
        format!("{}/errors", self.root)
    }

    /// `P/snapshots/<cam>`: JPEG snapshots.
    pub fn snapshot(&self, camera: &str) -> String {
        format!("{}/snapshots/{camera}", self.root)
    }

    /// `P/backup/<job>`: a backup job's progress.
    pub fn backup(&self, job: impl std::fmt::Display) -> String {
        format!("{}/backup/{job}", self.root)
    }

    /// `P/cmd/<name>`: a command request.
    pub fn command(&self, name: &str) -> String {
        format!("{}/cmd/{name}", self.root)
    }

    /// `P/replies/<id>`: the reply to request `id`.
    pub fn reply(&self, id: &str) -> String {
        format!("{}/replies/{id}", self.root)
    }

    /// `P/workers/+/status`: every worker's status.
    pub fn worker_statuses(&self) -> String {
        format!("{}/workers/+/status", self.root)
    }

    /// `P/detections/+`: every camera's detections.
    pub fn detections(&self) -> String {
        format!("{}/detections/+", self.root)
    }

    /// `P/cmd/+`: every command request.
    pub fn commands(&self) -> String {
        format!("{}/cmd/+", self.root)
    }
}

/// True when `topic` matches the subscription `filter` (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (expected, Some(actual)) if expected == actual => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_contract_topics() {
        let t = Topics::new("heldar/nvr-01");
        assert_eq!(t.status(), "heldar/nvr-01/status");
        assert_eq!(t.event("front", "zone_enter"), "heldar/nvr-01/events/front/zone_enter");
        assert_eq!(t.camera_state("front"), "heldar/nvr-01/cameras/front/state");
        assert_eq!(t.zone_count("front", "door", "all"), "heldar/nvr-01/zones/front/door/all");
        assert_eq!(t.reply("r1"), "heldar/nvr-01/replies/r1");
        assert!(topic_matches(&t.commands(), &t.command("status")));
        assert!(topic_matches(&t.worker_statuses(), "heldar/nvr-01/workers/w1/status"));
    }

    #[test]
    fn matches_wildcards() {
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(!topic_matches("a/+/c", "a/b/d"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("a/#", "a"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(!topic_matches("a/b/c", "a/b"));
        assert!(topic_matches("a/b", "a/b"));
    }
}
