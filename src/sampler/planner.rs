//! Re-plans the sampling budget whenever the workers change and tells each
//! camera's sampler its rate; publishes the offer on `P/tasks` (retained).

use super::budget::{self, SampleDemand};
use super::camera::{SamplerBoard, scaled_height};
use crate::mqtt::MqttHandle;
use crate::offers::WorkerSummary;
use rumqttc::QoS;
use serde_json::json;
use std::collections::BTreeMap;
use tokio::sync::watch;

/// A sampled camera as the planner sees it.
#[derive(Clone, Debug)]
pub struct PlannedCamera {
    /// Its demand.
    pub demand: SampleDemand,
    /// Width of its frames.
    pub width: u32,
    /// Where its sampler reads its rate (shared: the camera outlives a planner).
    pub rate: std::sync::Arc<watch::Sender<f64>>,
}

/// The planner task's inputs.
pub struct Planner {
    /// Sampled cameras, in config order.
    pub cameras: Vec<PlannedCamera>,
    /// `[sampler] max_total_fps` in force.
    pub max_total_fps: f64,
    /// The online workers.
    pub workers: watch::Receiver<WorkerSummary>,
    /// Source sizes, for the frame size in `P/tasks`.
    pub board: SamplerBoard,
    /// The broker session.
    pub mqtt: MqttHandle,
}

/// The `P/tasks` payload: what each camera is offered at, once a worker is online.
pub fn tasks_payload(cameras: &[(String, f64, u32, Option<u32>)]) -> serde_json::Value {
    let list: Vec<_> = cameras
        .iter()
        .map(|(camera, fps, width, height)| json!({"camera": camera, "fps": fps, "width": width, "height": height}))
        .collect();
    json!({"v": 1, "cameras": list})
}

impl Planner {
    /// Runs until the worker watch ends.
    pub async fn run(mut self) {
        let mut last_tasks = String::new();
        loop {
            let workers = *self.workers.borrow_and_update();
            let demands: Vec<SampleDemand> = self.cameras.iter().map(|c| c.demand.clone()).collect();
            let offer = budget::plan(&demands, self.max_total_fps, workers.cap_fps);
            for (camera, fps) in self.cameras.iter().zip(&offer) {
                // Frames only while a worker is online: no decoding for nobody.
                let rate = if workers.online > 0 { *fps } else { 0.0 };
                camera.rate.send_if_modified(|current| {
                    let changed = (*current - rate).abs() > 1e-9;
                    *current = rate;
                    changed
                });
            }
            let tasks: Vec<(String, f64, u32, Option<u32>)> = self
                .cameras
                .iter()
                .zip(&offer)
                .map(|(c, fps)| {
                    let height = self.board.size(&c.demand.camera).map(|size| scaled_height(c.width, size));
                    (c.demand.camera.clone(), *fps, c.width, height)
                })
                .collect();
            let payload = tasks_payload(&tasks).to_string();
            if payload != last_tasks {
                let topic = self.mqtt.topics().tasks();
                self.mqtt.publish(topic, payload.clone(), QoS::AtLeastOnce, true);
                last_tasks = payload;
            }
            let rates: BTreeMap<&str, f64> =
                self.cameras.iter().map(|c| (c.demand.camera.as_str(), *c.rate.borrow())).collect();
            tracing::debug!(workers = workers.online, rates = ?rates, "sampling planned");
            tokio::select! {
                changed = self.workers.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = self.board.sizes_changed.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_list_rate_and_frame_size() {
        let v = tasks_payload(&[("front".into(), 2.0, 640, Some(360)), ("back".into(), 0.5, 320, None)]);
        assert_eq!(v["v"], 1);
        assert_eq!(v["cameras"][0], json!({"camera": "front", "fps": 2.0, "width": 640, "height": 360}));
        assert!(v["cameras"][1]["height"].is_null());
    }
}
