//! Objects in a camera's whole frame, not only inside zones: per label the
//! camera's zones count (and `all`), how many detections the latest batch
//! held. Published retained on `P/objects/<camera>/<label>` when a count
//! changes, back to 0 when detections stop. Pure counting; the zone service
//! publishes.

use std::collections::BTreeMap;

/// Batches older than this no longer count: the camera's objects go back to 0.
pub const FRAME_TIMEOUT_MS: i64 = 5_000;

/// The labels counted for each camera's whole frame: those its zones count, and `all`.
pub fn frame_labels(cameras: &[crate::config::schema::CameraConfig]) -> BTreeMap<String, Vec<String>> {
    cameras
        .iter()
        .map(|camera| {
            let mut labels: Vec<String> = camera.zones.iter().flat_map(|z| z.labels.iter().cloned()).collect();
            labels.sort();
            labels.dedup();
            labels.retain(|l| l != "all");
            labels.insert(0, "all".to_string());
            (camera.id.clone(), labels)
        })
        .collect()
}

/// Counts `detected` labels for each of `labels` (`all` counts every detection).
pub fn frame_counts<'a>(labels: &[String], detected: impl Iterator<Item = &'a str>) -> Vec<(String, u32)> {
    let mut counts: Vec<(String, u32)> = labels.iter().map(|l| (l.clone(), 0)).collect();
    for label in detected {
        for (counted, n) in &mut counts {
            if counted == "all" || counted == label {
                *n += 1;
            }
        }
    }
    counts
}

/// What was published of each camera's whole frame, and when its last batch came.
#[derive(Debug, Default)]
pub struct FrameObjects {
    labels: BTreeMap<String, Vec<String>>,
    published: BTreeMap<(String, String), u32>,
    last_batch: BTreeMap<String, i64>,
}

/// A count to publish: camera, label, count.
pub type ObjectCount = (String, String, u32);

impl FrameObjects {
    /// Counts for the labels of `labels` (camera → labels), every one 0 until seen.
    pub fn new(labels: BTreeMap<String, Vec<String>>) -> Self {
        Self { labels, ..Self::default() }
    }

    /// Takes a reload's labels; returns the counts to publish (0 for new ones) and the
    /// (camera, label) pairs no longer counted, whose retained counts are to be cleared.
    pub fn reconfigure(&mut self, labels: BTreeMap<String, Vec<String>>) -> (Vec<ObjectCount>, Vec<(String, String)>) {
        let mut gone = Vec::new();
        self.published.retain(|(camera, label), _| {
            let kept = labels.get(camera).is_some_and(|l| l.contains(label));
            if !kept {
                gone.push((camera.clone(), label.clone()));
            }
            kept
        });
        self.labels = labels;
        (self.zeros(|_| true), gone)
    }

    /// A batch of `camera` at `now_ms` with these labels detected: the counts that changed.
    pub fn batch<'a>(
        &mut self,
        camera: &str,
        now_ms: i64,
        detected: impl Iterator<Item = &'a str>,
    ) -> Vec<ObjectCount> {
        let Some(labels) = self.labels.get(camera) else { return Vec::new() };
        self.last_batch.insert(camera.to_string(), now_ms);
        let counts = frame_counts(labels, detected);
        self.changed(camera, counts)
    }

    /// At `now_ms`: cameras whose detections stopped go back to 0; unpublished labels get 0.
    pub fn tick(&mut self, now_ms: i64) -> Vec<ObjectCount> {
        let quiet: Vec<String> = self
            .labels
            .keys()
            .filter(|c| self.last_batch.get(*c).is_none_or(|at| now_ms - at > FRAME_TIMEOUT_MS))
            .cloned()
            .collect();
        self.zeros(|camera| quiet.iter().any(|q| q == camera))
    }

    fn zeros(&mut self, which: impl Fn(&str) -> bool) -> Vec<ObjectCount> {
        let cameras: Vec<(String, Vec<String>)> =
            self.labels.iter().filter(|(c, _)| which(c)).map(|(c, l)| (c.clone(), l.clone())).collect();
        let mut out = Vec::new();
        for (camera, labels) in cameras {
            out.extend(self.changed(&camera, labels.into_iter().map(|l| (l, 0)).collect()));
        }
        out
    }

    fn changed(&mut self, camera: &str, counts: Vec<(String, u32)>) -> Vec<ObjectCount> {
        let mut out = Vec::new();
        for (label, count) in counts {
            let key = (camera.to_string(), label.clone());
            if self.published.get(&key) != Some(&count) {
                self.published.insert(key, count);
                out.push((camera.to_string(), label, count));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_counts_everything_and_each_label_its_own() {
        let labels = vec!["all".to_string(), "car".to_string(), "person".to_string()];
        let counts = frame_counts(&labels, ["person", "person", "dog"].into_iter());
        assert_eq!(counts, [("all".into(), 3), ("car".into(), 0), ("person".into(), 2)]);
    }

    #[test]
    fn counts_start_at_0_change_with_batches_and_fall_back_when_detections_stop() {
        let labels: BTreeMap<String, Vec<String>> = [("front".to_string(), vec!["all".into(), "person".into()])].into();
        let mut frame = FrameObjects::new(labels.clone());
        let zero = |l: &str| ("front".to_string(), l.to_string(), 0);
        assert_eq!(frame.tick(0), [zero("all"), zero("person")], "every label has a value from the start");
        assert!(frame.tick(1000).is_empty(), "published once");
        let seen = frame.batch("front", 2000, ["person", "car"].into_iter());
        assert_eq!(seen, [("front".into(), "all".into(), 2), ("front".into(), "person".into(), 1)]);
        assert!(frame.batch("front", 2500, ["car", "person"].into_iter()).is_empty(), "unchanged");
        assert!(frame.tick(2000 + FRAME_TIMEOUT_MS).is_empty(), "still fresh");
        assert_eq!(frame.tick(2600 + FRAME_TIMEOUT_MS), [zero("all"), zero("person")]);
        assert!(frame.batch("back", 3000, ["person"].into_iter()).is_empty(), "an unknown camera");
    }

    #[test]
    fn a_reload_names_the_counts_no_longer_kept() {
        let labels: BTreeMap<String, Vec<String>> =
            [("front".to_string(), vec!["all".into(), "person".into()]), ("back".to_string(), vec!["all".into()])]
                .into();
        let mut frame = FrameObjects::new(labels);
        assert_eq!(frame.tick(0).len(), 3);
        let (counts, gone) = frame.reconfigure([("front".to_string(), vec!["all".into(), "car".into()])].into());
        assert_eq!(counts, [("front".to_string(), "car".to_string(), 0)], "a new label starts at 0");
        assert_eq!(gone, [("back".to_string(), "all".to_string()), ("front".to_string(), "person".to_string())]);
    }
}
