//! What a reload changes: the running config against the new one, camera by
//! camera. Pure; the service applies the plan.

use crate::config::LoadedConfig;
use crate::config::schema::CameraConfig;
use serde_json::{Value, json};

/// What happens to one camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraChange {
    /// New: its recorder starts.
    Added,
    /// Gone: its recorder stops, closing and indexing its segment.
    Removed,
    /// Its capture changed (source, format, segments, sampled stream): the recorder restarts.
    Restarted,
    /// Only what runs beside the recorder changed: it keeps recording.
    Updated(Updates),
    /// Nothing.
    Unchanged,
}

/// The parts of an `Updated` camera that change without touching its recorder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Updates {
    /// Zones (their engine starts over).
    pub zones: bool,
    /// Sampling rate or priority (re-planned).
    pub sampling: bool,
    /// `record` mode or schedule.
    pub record: bool,
    /// `retain_days`.
    pub retention: bool,
}

/// A reload's plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Keys whose change needs a restart of the service; when any is set, nothing is applied.
    pub restart_required: Vec<&'static str>,
    /// Per camera, in the new config's order, then the removed ones.
    pub cameras: Vec<(String, CameraChange)>,
    /// `[sampler]` changed: re-plan.
    pub sampler: bool,
    /// `[events]` changed (lock rolls).
    pub events: bool,
    /// `[storage]` limits changed.
    pub storage: bool,
    /// `[backup]` changed: the scheduler restarts.
    pub backup: bool,
    /// `[commands]` changed (keys are re-read on every reload regardless).
    pub commands: bool,
    /// `[homeassistant]` changed.
    pub homeassistant: bool,
}

/// Whether `old` → `new` changes how the camera is captured (its recorder must restart).
fn capture_changed(old: &CameraConfig, new: &CameraConfig) -> bool {
    old.source != new.source
        || old.password_file != new.password_file
        || old.capture != new.capture
        || old.segment_s != new.segment_s
        || old.v4l2 != new.v4l2
        || old.sample_width != new.sample_width
        // The recorder writes the sampler's stream only for sampled cameras.
        || (old.sample_fps > 0.0) != (new.sample_fps > 0.0)
        || old.sample_source != new.sample_source
}

fn camera_change(old: &CameraConfig, new: &CameraConfig) -> CameraChange {
    if capture_changed(old, new) {
        return CameraChange::Restarted;
    }
    let updates = Updates {
        zones: old.zones != new.zones,
        sampling: old.sample_fps != new.sample_fps || old.priority != new.priority,
        record: old.record != new.record || old.schedule != new.schedule,
        retention: old.retain_days != new.retain_days,
    };
    if updates == Updates::default() { CameraChange::Unchanged } else { CameraChange::Updated(updates) }
}

/// The plan from the running config `old` to `new`.
pub fn plan(old: &LoadedConfig, new: &LoadedConfig) -> ReloadPlan {
    let (o, n) = (&old.config, &new.config);
    let mut restart_required = Vec::new();
    let mut require = |key: &'static str, changed: bool| {
        if changed {
            restart_required.push(key);
        }
    };
    require("node.id", old.node_id != new.node_id);
    require("node.board", o.node.board != n.node.board || old.board.limits != new.board.limits);
    require("node.data_dir", old.data_dir != new.data_dir);
    require("storage.recordings_dir", old.recordings_dir != new.recordings_dir);
    require("mqtt", o.mqtt != n.mqtt);
    require("homeassistant.prefix", o.homeassistant.prefix != n.homeassistant.prefix);
    // The listener is bound once, at start; users and cameras are read per request.
    let listener = |h: &Option<crate::config::schema::HttpConfig>| {
        h.as_ref().map(|h| (h.listen.clone(), h.cert_file.clone(), h.key_file.clone()))
    };
    require("http", listener(&o.http) != listener(&n.http));
    let mut cameras: Vec<(String, CameraChange)> = n
        .cameras
        .iter()
        .map(|camera| match o.cameras.iter().find(|c| c.id == camera.id) {
            Some(before) => (camera.id.clone(), camera_change(before, camera)),
            None => (camera.id.clone(), CameraChange::Added),
        })
        .collect();
    for camera in &o.cameras {
        if !n.cameras.iter().any(|c| c.id == camera.id) {
            cameras.push((camera.id.clone(), CameraChange::Removed));
        }
    }
    ReloadPlan {
        restart_required,
        cameras,
        sampler: o.sampler != n.sampler,
        events: o.events != n.events,
        storage: o.storage != n.storage,
        backup: o.backup != n.backup,
        commands: o.commands != n.commands,
        homeassistant: o.homeassistant != n.homeassistant,
    }
}

impl ReloadPlan {
    /// The cameras with `change`.
    pub fn with(&self, change: impl Fn(&CameraChange) -> bool) -> Vec<&str> {
        self.cameras.iter().filter(|(_, c)| change(c)).map(|(id, _)| id.as_str()).collect()
    }

    /// The reply's `result`: what changed.
    pub fn summary(&self) -> Value {
        let updated = |part: fn(&Updates) -> bool| self.with(|c| matches!(c, CameraChange::Updated(u) if part(u)));
        let sections: Vec<&str> = [
            ("sampler", self.sampler),
            ("events", self.events),
            ("storage", self.storage),
            ("backup", self.backup),
            ("commands", self.commands),
            ("homeassistant", self.homeassistant),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect();
        json!({
            "cameras": {
                "added": self.with(|c| *c == CameraChange::Added),
                "removed": self.with(|c| *c == CameraChange::Removed),
                "restarted": self.with(|c| *c == CameraChange::Restarted),
                "zones": updated(|u| u.zones),
                "sampling": updated(|u| u.sampling),
                "record": updated(|u| u.record),
                "retention": updated(|u| u.retention),
                "unchanged": self.with(|c| *c == CameraChange::Unchanged),
            },
            "sections": sections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(text: &str) -> LoadedConfig {
        let text = format!("[node]\nid = \"n\"\ndata_dir = \"/tmp/heldar-reload\"\n{text}");
        crate::config::test_config(&text)
    }

    const BASE: &str = "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\n\
                        [[camera]]\nid = \"b\"\nsource = \"lavfi:testsrc2\"\nsample_fps = 1\n\
                        [[camera]]\nid = \"c\"\nsource = \"lavfi:smptebars\"\n";

    #[test]
    fn cameras_are_added_removed_restarted_updated_or_left_alone() {
        let old = loaded(BASE);
        let new = loaded(
            "[[camera]]\nid = \"a\"\nsource = \"lavfi:testsrc\"\nsegment_s = 10\n\
             [[camera]]\nid = \"b\"\nsource = \"lavfi:testsrc2\"\nsample_fps = 2\nretain_days = 3\n\
             [[camera.zone]]\nid = \"z\"\npolygon = [[0, 0], [1, 0], [1, 1]]\n\
             [[camera]]\nid = \"d\"\nsource = \"lavfi:testsrc\"\n",
        );
        let plan = plan(&old, &new);
        assert!(plan.restart_required.is_empty());
        let zones_sampling_retention = Updates { zones: true, sampling: true, record: false, retention: true };
        assert_eq!(
            plan.cameras,
            [
                ("a".to_string(), CameraChange::Restarted),
                ("b".to_string(), CameraChange::Updated(zones_sampling_retention)),
                ("d".to_string(), CameraChange::Added),
                ("c".to_string(), CameraChange::Removed),
            ]
        );
        let summary = plan.summary();
        assert_eq!(summary["cameras"]["zones"], json!(["b"]));
        assert_eq!(summary["cameras"]["removed"], json!(["c"]));
        assert_eq!(summary["sections"], json!([]));
    }

    #[test]
    fn starting_or_stopping_sampling_restarts_the_recorder_a_rate_change_does_not() {
        let old = loaded(BASE);
        let stop_sampling = loaded(&BASE.replace("sample_fps = 1", "sample_fps = 0"));
        assert_eq!(plan(&old, &stop_sampling).cameras[1].1, CameraChange::Restarted);
        let unchanged = plan(&old, &old);
        assert!(unchanged.cameras.iter().all(|(_, c)| *c == CameraChange::Unchanged));
        let record = loaded(&format!("{BASE}record = \"events\"\n"));
        let plan = plan(&old, &record);
        assert_eq!(plan.cameras[2].1, CameraChange::Updated(Updates { record: true, ..Updates::default() }));
    }

    #[test]
    fn node_and_broker_changes_need_a_restart() {
        let old = loaded(BASE);
        let new = loaded(&format!("[mqtt]\nurl = \"mqtt://10.0.0.1:1883\"\n{BASE}"));
        assert_eq!(plan(&old, &new).restart_required, ["mqtt"]);
        let backup =
            loaded(&format!("{BASE}[[backup.destination]]\nid = \"d\"\nkind = \"local\"\npath = \"/tmp/x\"\n"));
        let plan = plan(&old, &backup);
        assert!(plan.backup && plan.restart_required.is_empty());
    }

    #[test]
    fn the_http_listener_needs_a_restart_and_its_users_do_not() {
        let http = loaded(&format!("{BASE}[http]\nlisten = \"127.0.0.1:8080\"\n"));
        assert_eq!(plan(&loaded(BASE), &http).restart_required, ["http"], "turned on");
        let moved = loaded(&format!("{BASE}[http]\nlisten = \"127.0.0.1:8081\"\n"));
        assert_eq!(plan(&http, &moved).restart_required, ["http"]);
        let longer = loaded(&format!("{BASE}[http]\nlisten = \"127.0.0.1:8080\"\nsession_hours = 2\n"));
        assert!(plan(&http, &longer).restart_required.is_empty());
    }
}
