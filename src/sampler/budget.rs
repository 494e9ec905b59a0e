//! The sampling budget: how many frames per second each camera is offered,
//! out of `[sampler] max_total_fps`, by priority. Pure.

/// A camera asking for frames.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleDemand {
    /// Camera id.
    pub camera: String,
    /// Its `sample_fps` (the most it gets).
    pub sample_fps: f64,
    /// Its `priority` (higher gets budget first).
    pub priority: u32,
}

/// Frames per second every sampled camera gets before any camera gets more.
pub const FLOOR_FPS: f64 = 0.5;

/// Plans the rate of each camera, in the order given. `worker_cap` is the most the
/// online workers take together (`None`: no worker set a `max_fps`).
///
/// 1. The budget is `max_total_fps`, capped by `worker_cap`.
/// 2. Every camera gets a floor: `min(sample_fps, FLOOR_FPS)`, or an equal share of the
///    budget when the floors do not fit.
/// 3. The rest goes by priority, highest first; cameras of equal priority share it
///    equally (water-filling), none beyond its `sample_fps`.
pub fn plan(demands: &[SampleDemand], max_total_fps: f64, worker_cap: Option<f64>) -> Vec<f64> {
    let budget = worker_cap.map_or(max_total_fps, |cap| cap.min(max_total_fps)).max(0.0);
    let wants: Vec<f64> = demands.iter().map(|d| d.sample_fps.max(0.0)).collect();
    let floors: Vec<f64> = wants.iter().map(|w| w.min(FLOOR_FPS)).collect();
    let floor_total: f64 = floors.iter().sum();
    let mut rates: Vec<f64> = if floor_total > budget {
        let share = budget / wants.iter().filter(|w| **w > 0.0).count().max(1) as f64;
        return wants.iter().map(|w| round(w.min(share))).collect();
    } else {
        floors
    };
    let mut left = budget - floor_total;
    let mut levels: Vec<u32> = demands.iter().map(|d| d.priority).collect();
    levels.sort_unstable_by(|a, b| b.cmp(a));
    levels.dedup();
    for level in levels {
        let mut members: Vec<usize> = (0..demands.len()).filter(|&i| demands[i].priority == level).collect();
        while left > 1e-9 {
            members.retain(|&i| wants[i] - rates[i] > 1e-9);
            if members.is_empty() {
                break;
            }
            let share = left / members.len() as f64;
            for &i in &members {
                let give = share.min(wants[i] - rates[i]);
                rates[i] += give;
                left -= give;
            }
        }
    }
    rates.into_iter().map(round).collect()
}

fn round(fps: f64) -> f64 {
    // Down to 0.01 fps, so rounding never takes the total over the budget.
    (fps * 100.0 + 1e-6).floor() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(camera: &str, sample_fps: f64, priority: u32) -> SampleDemand {
        SampleDemand { camera: camera.into(), sample_fps, priority }
    }

    #[test]
    fn everyone_gets_what_they_ask_when_it_fits() {
        let d = [demand("a", 2.0, 100), demand("b", 1.0, 50)];
        assert_eq!(plan(&d, 10.0, None), [2.0, 1.0]);
    }

    #[test]
    fn priority_gets_the_rest_after_the_floor() {
        let d = [demand("low", 5.0, 10), demand("high", 5.0, 100), demand("mid", 5.0, 50)];
        assert_eq!(plan(&d, 6.0, None), [0.5, 5.0, 0.5]);
        assert_eq!(plan(&d, 8.0, None), [0.5, 5.0, 2.5]);
    }

    #[test]
    fn equal_priorities_share_equally_up_to_their_caps() {
        let d = [demand("a", 1.0, 100), demand("b", 10.0, 100), demand("c", 10.0, 100)];
        assert_eq!(plan(&d, 9.0, None), [1.0, 4.0, 4.0]);
    }

    #[test]
    fn floors_are_shared_when_the_budget_is_too_small() {
        let d = [demand("a", 2.0, 100), demand("b", 2.0, 1), demand("c", 2.0, 1), demand("d", 0.0, 1)];
        assert_eq!(plan(&d, 0.9, None), [0.3, 0.3, 0.3, 0.0]);
    }

    #[test]
    fn worker_max_fps_caps_the_budget() {
        let d = [demand("a", 4.0, 100), demand("b", 4.0, 10)];
        assert_eq!(plan(&d, 20.0, Some(3.0)), [2.5, 0.5]);
        assert_eq!(plan(&d, 2.0, Some(30.0)), [1.5, 0.5]);
        assert_eq!(plan(&d, 20.0, Some(0.0)), [0.0, 0.0]);
    }

    #[test]
    fn the_total_never_exceeds_the_budget() {
        let d: Vec<SampleDemand> = (0..7).map(|i| demand(&format!("c{i}"), 3.3, i % 3)).collect();
        for budget in [0.1, 1.0, 3.7, 10.0, 23.1, 100.0] {
            let total: f64 = plan(&d, budget, None).iter().sum();
            assert!(total <= budget + 1e-9, "{total} > {budget}");
        }
    }
}
