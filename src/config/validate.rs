//! Semantic checks of a parsed config against itself and its board's limits.
//! Pure: returns every problem found, each with its key path.

use super::board::BoardLimits;
use super::schema::{
    CameraConfig, CaptureMode, Config, DAY_MINUTES, DestinationConfig, DestinationKind, Point, SnapshotSchedule,
    ZoneConfig,
};
use crate::protocol::rules::{is_label, is_slug, is_token, is_topic_level, is_topic_prefix};
use std::collections::HashSet;

/// One thing wrong with a config, at a key path such as `camera[1].zone[0].polygon`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Key path in the file.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { key: key.into(), message: message.into() });
    }
    fn range<T: PartialOrd + std::fmt::Display>(&mut self, key: impl Into<String>, value: T, min: T, max: T) {
        if !(value >= min && value <= max) {
            self.add(key, format!("must be in {min}..={max}, is {value}"));
        }
    }
}

/// Checks `config` whose node id is `node_id` against `limits`; empty when valid.
pub fn validate(config: &Config, node_id: &str, limits: &BoardLimits) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    if !is_topic_level(node_id) {
        p.add("node.id", format!("{node_id:?} is not usable as an MQTT topic level: use 1..64 of [A-Za-z0-9_.-]"));
    }
    if let Some(name) = &config.node.timezone
        && jiff::tz::db().get(name).is_err()
    {
        p.add(
            "node.timezone",
            format!("{name:?} is no time zone of the tz database: use an IANA name such as Europe/Berlin or UTC"),
        );
    }
    validate_mqtt(config, &mut p);
    validate_storage(config, &mut p);
    validate_sampler(config, limits, &mut p);
    p.range("events.pre_roll_s", config.events.pre_roll_s, 0, 3600);
    p.range("events.post_roll_s", config.events.post_roll_s, 0, 3600);
    validate_cameras(config, limits, &mut p);
    validate_backup(config, &mut p);
    validate_commands(config, &mut p);
    if !is_topic_prefix(&config.homeassistant.prefix) {
        p.add("homeassistant.prefix", "must be a topic prefix without wildcards or leading/trailing '/'");
    }
    p.0.extend(super::http::validate_http(config));
    p.0
}

fn validate_mqtt(config: &Config, p: &mut Problems) {
    let mqtt = &config.mqtt;
    match crate::protocol::BrokerUrl::parse(&mqtt.url) {
        Ok(url) => {
            if mqtt.ca_file.is_some() && !url.tls {
                p.add("mqtt.ca_file", "is only used with an mqtts:// url");
            }
        }
        Err(e) => p.add("mqtt.url", e),
    }
    if !is_topic_prefix(&mqtt.topic_prefix) {
        p.add("mqtt.topic_prefix", "must be a topic prefix without wildcards or leading/trailing '/'");
    }
    if let Some(id) = &mqtt.client_id
        && (id.is_empty() || id.len() > 128)
    {
        p.add("mqtt.client_id", "must be 1..128 characters");
    }
    if mqtt.password_file.is_some() && mqtt.username.is_none() {
        p.add("mqtt.password_file", "needs mqtt.username");
    }
    p.range("mqtt.keepalive_s", mqtt.keepalive_s, 5, 3600);
    p.range("mqtt.stats_interval_s", mqtt.stats_interval_s, 1, 86_400);
}

fn validate_storage(config: &Config, p: &mut Problems) {
    let storage = &config.storage;
    p.range("storage.min_free_percent", storage.min_free_percent, 0.0, 90.0);
    p.range("storage.sweep_interval_s", storage.sweep_interval_s, 1, 3600);
    if let Some(max) = storage.max_bytes
        && max.0 < 100 << 20
    {
        p.add("storage.max_bytes", format!("must be at least 100MiB, is {max}"));
    }
}

fn validate_sampler(config: &Config, limits: &BoardLimits, p: &mut Problems) {
    if let Some(fps) = config.sampler.max_total_fps
        && !(fps > 0.0 && fps <= limits.max_total_fps)
    {
        p.add(
            "sampler.max_total_fps",
            format!("must be above 0 and at most the board's max_total_fps {}, is {fps}", limits.max_total_fps),
        );
    }
}

fn validate_cameras(config: &Config, limits: &BoardLimits, p: &mut Problems) {
    if config.cameras.len() > limits.max_cameras {
        p.add(
            "camera",
            format!("{} cameras configured, the board's max_cameras is {}", config.cameras.len(), limits.max_cameras),
        );
    }
    let mut ids = HashSet::new();
    for (i, camera) in config.cameras.iter().enumerate() {
        let key = format!("camera[{i}]");
        if !is_slug(&camera.id, 32) || camera.id.starts_with('_') {
            p.add(format!("{key}.id"), format!("{:?} must be 1..32 of [a-z0-9_-], not starting with '_'", camera.id));
        } else if !ids.insert(camera.id.as_str()) {
            p.add(format!("{key}.id"), format!("camera id {:?} is used twice", camera.id));
        }
        validate_camera(camera, &key, limits, p);
    }
}

fn validate_camera(camera: &CameraConfig, key: &str, limits: &BoardLimits, p: &mut Problems) {
    validate_name(camera.name.as_deref(), key, p);
    let source = camera.source.as_str();
    let network = is_network(source);
    let v4l2 = source.starts_with("v4l2:///dev/");
    let lavfi = is_lavfi(source);
    if !(network || v4l2 || lavfi) {
        p.add(format!("{key}.source"), "must be rtsp(s)://…, http(s)://…, v4l2:///dev/videoN or lavfi:<graph>");
    }
    if network && url_has_inline_password(source) {
        p.add(format!("{key}.source"), "holds a password: put it in password_file instead");
    }
    if let Some(sample) = &camera.sample_source {
        if !(is_network(sample) || is_lavfi(sample)) {
            p.add(format!("{key}.sample_source"), "must be rtsp(s)://…, http(s)://… or lavfi:<graph>");
        } else if url_has_inline_password(sample) {
            p.add(format!("{key}.sample_source"), "holds a password: put it in password_file instead");
        } else if camera.sample_fps == 0.0 {
            p.add(format!("{key}.sample_source"), "is only used when sample_fps is above 0");
        }
    }
    if camera.capture == Some(CaptureMode::Native) && !source.starts_with("rtsp://") {
        p.add(format!("{key}.capture"), "\"native\" takes rtsp:// sources only: use \"ffmpeg\" for this source");
    }
    if camera.password_file.is_some() && !network {
        p.add(format!("{key}.password_file"), "is only used with network (rtsp/http) sources");
    }
    if camera.v4l2.is_some() && !v4l2 {
        p.add(format!("{key}.v4l2"), "is only used with v4l2:// sources");
    }
    if let Some(v) = &camera.v4l2 {
        p.range(format!("{key}.v4l2.width"), v.width, 16, 7680);
        p.range(format!("{key}.v4l2.height"), v.height, 16, 4320);
        p.range(format!("{key}.v4l2.fps"), v.fps, 1, 240);
    }
    p.range(format!("{key}.segment_s"), camera.segment_s, 2, 3600);
    p.range(format!("{key}.retain_days"), camera.retain_days, 1, 3650);
    if !(camera.sample_fps >= 0.0 && camera.sample_fps <= limits.max_total_fps) {
        p.add(
            format!("{key}.sample_fps"),
            format!("must be in 0..={} (the board's max_total_fps), is {}", limits.max_total_fps, camera.sample_fps),
        );
    }
    p.range(format!("{key}.sample_width"), camera.sample_width, 32, 3840);
    if !camera.sample_width.is_multiple_of(2) {
        p.add(format!("{key}.sample_width"), "must be even");
    }
    p.range(format!("{key}.priority"), camera.priority, 0, 1000);
    if camera.zones.len() > limits.max_zones_per_camera {
        p.add(
            format!("{key}.zone"),
            format!(
                "{} zones configured, the board's max_zones_per_camera is {}",
                camera.zones.len(),
                limits.max_zones_per_camera
            ),
        );
    }
    validate_schedules(camera, key, p);
    let mut zone_ids = HashSet::new();
    for (z, zone) in camera.zones.iter().enumerate() {
        let zkey = format!("{key}.zone[{z}]");
        if !is_slug(&zone.id, 32) {
            p.add(format!("{zkey}.id"), format!("{:?} must be 1..32 of [a-z0-9_-]", zone.id));
        } else if !zone_ids.insert(zone.id.as_str()) {
            p.add(format!("{zkey}.id"), format!("zone id {:?} is used twice in this camera", zone.id));
        }
        validate_name(zone.name.as_deref(), &zkey, p);
        validate_zone(zone, &zkey, limits, p);
    }
}

/// Most windows in a camera's schedule, and most snapshot schedules.
const MAX_WINDOWS: usize = 32;

fn validate_schedules(camera: &CameraConfig, key: &str, p: &mut Problems) {
    if camera.schedule.len() > MAX_WINDOWS {
        p.add(format!("{key}.schedule"), format!("{} windows, at most {MAX_WINDOWS}", camera.schedule.len()));
    }
    for (w, window) in camera.schedule.iter().enumerate() {
        if window.from.0 == DAY_MINUTES {
            p.add(format!("{key}.schedule[{w}].from"), "24:00 ends a day: open the window at 00:00 instead");
        }
    }
    if camera.snapshot_schedule.len() > MAX_WINDOWS {
        let many = camera.snapshot_schedule.len();
        p.add(format!("{key}.snapshot_schedule"), format!("{many} snapshot schedules, at most {MAX_WINDOWS}"));
    }
    for (s, shot) in camera.snapshot_schedule.iter().enumerate() {
        validate_snapshot_schedule(shot, &format!("{key}.snapshot_schedule[{s}]"), p);
    }
}

fn validate_snapshot_schedule(shot: &SnapshotSchedule, key: &str, p: &mut Problems) {
    if shot.every_s < 10 {
        p.add(format!("{key}.every_s"), format!("must be at least 10 (seconds), is {}", shot.every_s));
    }
    p.range(format!("{key}.every_s"), shot.every_s.max(10), 10, 7 * 86_400);
    p.range(format!("{key}.width"), shot.width, 32, 3840);
    if !shot.width.is_multiple_of(2) {
        p.add(format!("{key}.width"), "must be even");
    }
    p.range(format!("{key}.retain_days"), shot.retain_days, 1, 3650);
    if shot.from.is_some_and(|t| t.0 == DAY_MINUTES) {
        p.add(format!("{key}.from"), "24:00 ends a day: start at 00:00 instead");
    }
}

/// An `rtsp(s)://` or `http(s)://` source.
fn is_network(source: &str) -> bool {
    ["rtsp://", "rtsps://", "http://", "https://"].iter().any(|s| source.starts_with(s))
}

/// A `lavfi:` source with a graph.
fn is_lavfi(source: &str) -> bool {
    source.strip_prefix("lavfi:").is_some_and(|graph| !graph.trim().is_empty())
}

fn url_has_inline_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// A `name` for people: 1..64 characters, no control characters.
fn validate_name(name: Option<&str>, key: &str, p: &mut Problems) {
    if let Some(name) = name
        && (name.trim().is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control))
    {
        p.add(format!("{key}.name"), format!("{name:?} must be 1..64 characters, none of them control characters"));
    }
}

fn validate_zone(zone: &ZoneConfig, key: &str, limits: &BoardLimits, p: &mut Problems) {
    match (&zone.polygon, &zone.line) {
        (Some(_), Some(_)) => p.add(key.to_string(), "has both polygon and line: a zone is one or the other"),
        (None, None) => p.add(key.to_string(), "needs a polygon or a line"),
        (Some(points), None) => {
            let pkey = format!("{key}.polygon");
            if points.len() < 3 || points.len() > limits.max_zone_points {
                p.add(
                    pkey.clone(),
                    format!(
                        "needs 3..={} points (the board's max_zone_points), has {}",
                        limits.max_zone_points,
                        points.len()
                    ),
                );
            }
            validate_points(points, &pkey, p);
            if zone.direction.is_some() {
                p.add(format!("{key}.direction"), "is only used with a line");
            }
        }
        (None, Some(points)) => {
            let lkey = format!("{key}.line");
            if points.len() != 2 {
                p.add(lkey.clone(), format!("needs exactly 2 points, has {}", points.len()));
            } else if points[0] == points[1] {
                p.add(lkey.clone(), "its 2 points are the same");
            }
            validate_points(points, &lkey, p);
            if zone.dwell_s > 0 {
                p.add(format!("{key}.dwell_s"), "is only used with a polygon");
            }
            if zone.count_threshold > 0 {
                p.add(format!("{key}.count_threshold"), "is only used with a polygon");
            }
        }
    }
    for (l, label) in zone.labels.iter().enumerate() {
        if !is_label(label) {
            p.add(format!("{key}.labels[{l}]"), format!("{label:?} must be 1..64 of [a-z0-9_ -]"));
        }
    }
    if !(zone.min_confidence >= 0.0 && zone.min_confidence <= 1.0) {
        p.add(format!("{key}.min_confidence"), format!("must be in 0..=1, is {}", zone.min_confidence));
    }
    p.range(format!("{key}.inertia"), zone.inertia, 1, 100);
    p.range(format!("{key}.dwell_s"), zone.dwell_s, 0, 86_400);
    p.range(format!("{key}.count_threshold"), zone.count_threshold as usize, 0, limits.max_tracks_per_camera);
}

fn validate_points(points: &[Point], key: &str, p: &mut Problems) {
    for (i, point) in points.iter().enumerate() {
        if !point.0.iter().all(|c| c.is_finite() && (0.0..=1.0).contains(c)) {
            p.add(format!("{key}[{i}]"), format!("{:?} must lie inside 0..1", point.0));
        }
    }
}

fn validate_backup(config: &Config, p: &mut Problems) {
    let mut ids = HashSet::new();
    for (i, dest) in config.backup.destinations.iter().enumerate() {
        let key = format!("backup.destination[{i}]");
        if !is_slug(&dest.id, 32) {
            p.add(format!("{key}.id"), format!("{:?} must be 1..32 of [a-z0-9_-]", dest.id));
        } else if !ids.insert(dest.id.as_str()) {
            p.add(format!("{key}.id"), format!("destination id {:?} is used twice", dest.id));
        }
        validate_destination(dest, &key, p);
    }
    let cameras: HashSet<&str> = config.cameras.iter().map(|c| c.id.as_str()).collect();
    let mut policy_ids = HashSet::new();
    for (i, policy) in config.backup.policies.iter().enumerate() {
        let key = format!("backup.policy[{i}]");
        if !is_slug(&policy.id, 32) {
            p.add(format!("{key}.id"), format!("{:?} must be 1..32 of [a-z0-9_-]", policy.id));
        } else if !policy_ids.insert(policy.id.as_str()) {
            p.add(format!("{key}.id"), format!("policy id {:?} is used twice", policy.id));
        }
        if !ids.contains(policy.destination.as_str()) {
            p.add(
                format!("{key}.destination"),
                format!("names {:?}, which is no [[backup.destination]] id", policy.destination),
            );
        }
        for (c, camera) in policy.cameras.iter().enumerate() {
            if !cameras.contains(camera.as_str()) {
                p.add(format!("{key}.cameras[{c}]"), format!("names {camera:?}, which is no [[camera]] id"));
            }
        }
        p.range(format!("{key}.concurrency"), policy.concurrency, 1, 8);
        if policy.bandwidth.is_some_and(|b| b.0 < 1024) {
            p.add(format!("{key}.bandwidth"), "must be at least 1KiB per second");
        }
        if policy.every_s != 0 && policy.every_s < 60 {
            p.add(
                format!("{key}.every_s"),
                format!("must be 0 (on request only) or at least 60, is {}", policy.every_s),
            );
        }
    }
}

fn validate_destination(dest: &DestinationConfig, key: &str, p: &mut Problems) {
    let mut require = |field: &str, present: bool| {
        if !present {
            p.add(format!("{key}.{field}"), format!("is required for kind = \"{}\"", dest.kind.name()));
        }
    };
    match dest.kind {
        DestinationKind::Local | DestinationKind::Usb => {}
        DestinationKind::Sftp => {
            require("host", dest.host.is_some());
            require("user", dest.user.is_some());
        }
        DestinationKind::S3 => {
            require("access_key_id", dest.access_key_id.is_some());
            require("secret_access_key_file", dest.secret_access_key_file.is_some());
        }
        DestinationKind::Rclone => require("remote", dest.remote.is_some()),
    }
    let local = matches!(dest.kind, DestinationKind::Local | DestinationKind::Usb);
    if local && !dest.path.starts_with('/') {
        p.add(format!("{key}.path"), "must be an absolute directory");
    }
    if dest.path.is_empty() {
        p.add(format!("{key}.path"), "must not be empty");
    }
}

fn validate_commands(config: &Config, p: &mut Problems) {
    let check_allow = |key: String, allow: &[String], p: &mut Problems| {
        for (a, name) in allow.iter().enumerate() {
            if !crate::protocol::COMMAND_NAMES.contains(&name.as_str()) {
                p.add(
                    format!("{key}[{a}]"),
                    format!("{name:?} is no command; known: {}", crate::protocol::COMMAND_NAMES.join(", ")),
                );
            }
        }
    };
    check_allow("commands.allow".into(), &config.commands.allow, p);
    let mut ids = HashSet::new();
    for (i, key) in config.commands.keys.iter().enumerate() {
        let kkey = format!("commands.key[{i}]");
        if !is_token(&key.id, 1, 64) {
            p.add(format!("{kkey}.id"), format!("{:?} must be 1..64 of [A-Za-z0-9_-]", key.id));
        } else if !ids.insert(key.id.as_str()) {
            p.add(format!("{kkey}.id"), format!("key id {:?} is used twice", key.id));
        }
        check_allow(format!("{kkey}.allow"), &key.allow, p);
    }
}
