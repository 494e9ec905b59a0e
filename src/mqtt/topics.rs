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
