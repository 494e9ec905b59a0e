//! What `heldar-edge check` prints of a valid config.

use crate::capture::schedule;
use crate::config::LoadedConfig;
use crate::config::schema::{CameraConfig, Window};
use crate::wallclock::UnixMs;
use jiff::tz::TimeZone;

/// Where the packages install the drop-in that gives the unit the RK3588 encoder's devices.
pub const RK3588_DROP_IN: &str = "/usr/share/doc/heldar-edge/examples/rk3588-devices.conf";

/// What `heldar-edge check` prints for a valid config at `now`.
pub fn summary(loaded: &LoadedConfig, now: UnixMs) -> String {
    let c = &loaded.config;
    let mut lines = vec![
        format!("{}: valid", loaded.path.display()),
        format!("  node      {} (board {}: {})", loaded.node_id, c.node.board, loaded.board.description),
        format!("  broker    {} as {}, topics under {}/", c.mqtt.url, loaded.client_id(), loaded.topic_root()),
        format!("  data      {}", loaded.data_dir.display()),
        format!("  footage   {}", loaded.recordings_dir.display()),
        format!("  cameras   {} of at most {}", c.cameras.len(), loaded.board.limits.max_cameras),
    ];
    for camera in &c.cameras {
        let kind = camera.source.split(':').next().unwrap_or("?");
        let recorder = if camera.native_capture() { "native recorder" } else { "ffmpeg" };
        lines.push(format!(
            "    {:<16} {kind} by {recorder}, record {}, {} s segments, {} zones, sample {} fps",
            camera.id,
            camera.record.name(),
            camera.segment_s,
            camera.zones.len(),
            camera.sample_fps
        ));
        lines.extend(schedules(camera, &c.node.time_zone(), now));
    }
    lines.push(format!(
        "  backup    {} destinations, {} policies",
        c.backup.destinations.len(),
        c.backup.policies.len()
    ));
    lines.push(format!("  commands  auth {}, {} keys", c.commands.auth.name(), c.commands.keys.len()));
    lines.push(home_assistant(loaded));
    lines.push(viewing(loaded));
    if c.node.board == "rk3588" {
        // The hardened unit hides the device nodes of the hardware encoder.
        lines.push(format!("  encoder   the RK3588 encoder needs the unit drop-in {RK3588_DROP_IN}"));
    }
    lines.join("\n")
}

/// Where the viewing surface listens and who may log in.
fn viewing(loaded: &LoadedConfig) -> String {
    let Some(http) = &loaded.config.http else { return "  viewing   off (no [http])".to_string() };
    let scheme = if http.cert_file.is_some() { "https" } else { "http" };
    let users = match http.users.len() {
        0 => "no [[http.user]]: the first start makes `admin` and logs its password once".to_string(),
        n => format!("{n} users"),
    };
    format!("  viewing   {scheme}://{}/, {users}", http.listen)
}

/// Whether Home Assistant discovery is on, and what `switches = true` lets in unsigned.
fn home_assistant(loaded: &LoadedConfig) -> String {
    let ha = &loaded.config.homeassistant;
    if !ha.discovery {
        return "  home assistant  discovery off".to_string();
    }
    let devices = crate::homeassistant::discovery::devices(loaded).len();
    let mut line = format!("  home assistant  discovery on under {}/, {devices} devices", ha.prefix);
    if ha.switches {
        line.push_str(
            "\n  warning   [homeassistant] switches = true: `record` and `snapshot` are accepted unsigned; \
             restrict P/cmd/record and P/cmd/snapshot in the broker's ACL",
        );
    }
    line
}

/// A camera's schedules in words, and what its schedule does now and next.
fn schedules(camera: &CameraConfig, tz: &TimeZone, now: UnixMs) -> Vec<String> {
    let mut lines = Vec::new();
    let zone = tz.iana_name().unwrap_or("the system's zone");
    if !camera.schedule.is_empty() {
        let windows: Vec<String> =
            camera.schedule.iter().map(|w| format!("{} {}", w.describe(), w.record.name())).collect();
        lines.push(format!("{:21}schedule  {} ({zone}), else {}", "", windows.join("; "), camera.record.name()));
        let words = schedule::in_words(camera.record, &camera.schedule, tz, now);
        lines.push(format!("{:21}now       {}: {words}", "", camera.id));
    }
    for shot in &camera.snapshot_schedule {
        lines.push(format!(
            "{:21}snapshots every {} s, {} ({zone}), {} px wide, kept {} days",
            "",
            shot.every_s,
            shot.describe(),
            shot.width,
            shot.retain_days
        ));
    }
    lines
}
