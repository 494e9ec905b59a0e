//! Checks of `[http]`: the address, TLS files in pairs, users that can log in.

use super::schema::Config;
use super::validate::Problem;
use std::collections::HashSet;

/// Every problem of `config.http`, each with its key path; empty when valid or absent.
pub fn validate_http(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(http) = &config.http else { return problems };
    let mut add = |key: String, message: String| problems.push(Problem { key, message });
    if http.listen.parse::<std::net::SocketAddr>().is_err() {
        add("http.listen".into(), format!("{:?} is no address:port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080", http.listen));
    }
    match (&http.cert_file, &http.key_file) {
        (Some(_), None) => add("http.cert_file".into(), "needs http.key_file".into()),
        (None, Some(_)) => add("http.key_file".into(), "needs http.cert_file".into()),
        _ => {}
    }
    if let Some(url) = &http.public_url
        && (!(url.starts_with("http://") || url.starts_with("https://")) || url.contains(['?', '#', ' ']))
    {
        add(
            "http.public_url".into(),
            format!("{url:?} must be an http:// or https:// URL without query, e.g. https://nvr.example.com"),
        );
    }
    if !(1..=720).contains(&http.session_hours) {
        add("http.session_hours".into(), format!("must be in 1..=720, is {}", http.session_hours));
    }
    let cameras: HashSet<&str> = config.cameras.iter().map(|c| c.id.as_str()).collect();
    let mut names = HashSet::new();
    for (i, user) in http.users.iter().enumerate() {
        let key = format!("http.user[{i}]");
        if !is_user_name(&user.name) {
            add(format!("{key}.name"), format!("{:?} must be 1..64 of [A-Za-z0-9_.-]", user.name));
        } else if !names.insert(user.name.as_str()) {
            add(format!("{key}.name"), format!("user {:?} is named twice", user.name));
        }
        if let Err(why) = check_hash(&user.password_hash) {
            add(format!("{key}.password_hash"), why);
        }
        for (c, camera) in user.cameras.iter().enumerate() {
            if camera != "*" && !cameras.contains(camera.as_str()) {
                add(format!("{key}.cameras[{c}]"), format!("{camera:?} is no camera of this file (or \"*\" for all)"));
            }
        }
    }
    problems
}

/// A login name: 1..64 of `[A-Za-z0-9_.-]`.
pub fn is_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = argon2::PasswordHash::new(hash)
        .map_err(|e| format!("is no PHC string ({e}): make one with `heldar-edge passwd`"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!("is {}, not argon2id: make one with `heldar-edge passwd`", parsed.algorithm));
    }
    Ok(())
}
