//! Camera sources as configured, credentials spliced in at run time.

use crate::config::schema::CameraConfig;
use crate::sys::scrub::encode_userinfo;

/// What a camera's `source` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `rtsp://` or `rtsps://`: H.264/H.265 copied as is.
    Rtsp(String),
    /// `http://` or `https://` (MJPEG and similar): encoded to H.264.
    Http(String),
    /// `lavfi:<graph>`: ffmpeg's synthetic sources, for demos and tests.
    Lavfi(String),
    /// `v4l2:///dev/videoN`: captured with the v4l crate.
    V4l2(String),
}

impl Source {
    /// Classifies a validated `source`.
    pub fn parse(source: &str) -> Option<Self> {
        if source.starts_with("rtsp://") || source.starts_with("rtsps://") {
            Some(Self::Rtsp(source.to_string()))
        } else if source.starts_with("http://") || source.starts_with("https://") {
            Some(Self::Http(source.to_string()))
        } else if let Some(graph) = source.strip_prefix("lavfi:") {
            Some(Self::Lavfi(graph.to_string()))
        } else {
            source.strip_prefix("v4l2://").map(|device| Self::V4l2(device.to_string()))
        }
    }

    /// The source of `camera`, with `password` spliced into its URL when given.
    pub fn of_camera(camera: &CameraConfig, password: Option<&str>) -> Option<Self> {
        Some(Self::parse(&camera.source)?.with_password(password))
    }

    /// The `sample_source` of `camera`, if it has one, with the same password spliced in.
    pub fn sample_of_camera(camera: &CameraConfig, password: Option<&str>) -> Option<Self> {
        Some(Self::parse(camera.sample_source.as_deref()?)?.with_password(password))
    }

    fn with_password(self, password: Option<&str>) -> Self {
        match (self, password) {
            (Self::Rtsp(url), Some(password)) => Self::Rtsp(splice_password(&url, password)),
            (Self::Http(url), Some(password)) => Self::Http(splice_password(&url, password)),
            (source, _) => source,
        }
    }
}

/// Puts `password` into `url`'s userinfo (`scheme://user:password@host/…`); a URL
/// without a user gets the password alone after an empty user.
pub fn splice_password(url: &str, password: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (user, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (userinfo.split(':').next().unwrap_or(""), host),
        None => ("", authority),
    };
    format!("{scheme}://{user}:{}@{host}{tail}", encode_userinfo(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sources() {
        assert_eq!(Source::parse("rtsp://h/s"), Some(Source::Rtsp("rtsp://h/s".into())));
        assert_eq!(Source::parse("https://h/mjpg"), Some(Source::Http("https://h/mjpg".into())));
        assert_eq!(Source::parse("lavfi:testsrc"), Some(Source::Lavfi("testsrc".into())));
        assert_eq!(Source::parse("v4l2:///dev/video0"), Some(Source::V4l2("/dev/video0".into())));
        assert_eq!(Source::parse("ftp://h"), None);
    }

    #[test]
    fn splices_passwords_into_urls() {
        assert_eq!(splice_password("rtsp://admin@10.0.0.5:554/s1", "pw"), "rtsp://admin:pw@10.0.0.5:554/s1");
        assert_eq!(splice_password("rtsp://10.0.0.5/s1", "pw"), "rtsp://:pw@10.0.0.5/s1");
        assert_eq!(splice_password("rtsp://u@h/s?x=a@b", "p@ss/w:rd"), "rtsp://u:p%40ss%2Fw%3Ard@h/s?x=a@b");
    }
}
