//! What `heldar-edge check` prints of a valid config.

use crate::config::LoadedConfig;

/// What `heldar-edge check` prints for a valid config.
pub fn summary(loaded: &LoadedConfig) -> String {
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
        lines.push(format!(
            "    {:<16} {kind}, record {}, {} s segments, {} zones, sample {} fps",
            camera.id,
            camera.record.name(),
            camera.segment_s,
            camera.zones.len(),
            camera.sample_fps
        ));
    }
    lines.push(format!(
        "  backup    {} destinations, {} policies",
        c.backup.destinations.len(),
        c.backup.policies.len()
    ));
    lines.push(format!("  commands  auth {}, {} keys", c.commands.auth.name(), c.commands.keys.len()));
    lines.join("\n")
}
