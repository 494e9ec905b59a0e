//! Opening a camera's RTSP session with retina: the credentials taken out of
//! the URL (they stay in this process, never in an argv or a log), the first
//! H.264 or H.265 video stream and the first AAC audio stream set up over TCP
//! with MP4 framing, and play.

use super::fmp4::AudioTrack;
use crate::sys::socket;
use percent_encoding::percent_decode_str;
use retina::client::{Credentials, Demuxed, Described, PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::{FrameFormat, ParametersRef};
use std::collections::HashMap;
use std::net::{IpAddr, TcpStream};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use url::{Host, Url};

/// How long connecting, DESCRIBE, SETUP and PLAY may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a connection waits for another to the same host to be open.
const OPENING_WAIT: Duration = Duration::from_secs(2);

/// Per `host:port`, the turn to open a connection to it.
static OPENING: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);

/// A playing session and which of its streams is the video recorded.
pub struct Playing {
    /// Frames of the session.
    pub demuxed: Demuxed,
    /// The video stream's index.
    pub video: usize,
    /// The audio stream's index and its track, when the camera sends AAC that fits an MP4.
    pub audio: Option<(usize, AudioTrack)>,
    /// `h264` or `hevc` (ffmpeg's names, as the index and the sampler use them).
    pub codec: &'static str,
    /// The session's connection, to set its receive low-water mark, when it could be told
    /// apart from others this process opened meanwhile.
    pub connection: Option<TcpStream>,
}

/// Splits `url` (with the password spliced in) into the URL to ask and its credentials.
pub fn split_credentials(url: &str) -> Result<(Url, Option<Credentials>), String> {
    let mut url = Url::parse(url).map_err(|e| format!("bad camera URL: {e}"))?;
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let creds = (!url.username().is_empty() || url.password().is_some())
        .then(|| Credentials { username: decode(url.username()), password: decode(url.password().unwrap_or("")) });
    // Setting an empty user and no password cannot fail on an rtsp:// URL with a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url, creds))
}

/// Connects to the camera at `url` and plays its video.
pub async fn play(url: Url, creds: Option<Credentials>) -> Result<Playing, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, open(url, creds)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer from the camera within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

async fn open(url: Url, creds: Option<Credentials>) -> Result<Playing, String> {
    let options =
        SessionOptions::default().creds(creds).user_agent(format!("heldar-edge/{}", env!("CARGO_PKG_VERSION")));
    let (mut session, connection) = describe(url, options).await?;
    let found = session.streams().iter().enumerate().find_map(|(i, s)| {
        let codec = match (s.media(), s.encoding_name()) {
            ("video", "h264") => "h264",
            ("video", "h265") => "hevc",
            _ => return None,
        };
        Some((i, codec))
    });
    let Some((video, codec)) = found else {
        let offered: Vec<String> =
            session.streams().iter().map(|s| format!("{}/{}", s.media(), s.encoding_name())).collect();
        return Err(format!(
            "the camera offers no H.264 or H.265 video ({}): set capture = \"ffmpeg\" for it",
            offered.join(", ")
        ));
    };
    let setup = || SetupOptions::default().transport(Transport::Tcp(Default::default())).frame_format(FrameFormat::MP4);
    session.setup(video, setup()).await.map_err(|e| e.to_string())?;
    let mut audio = aac_track(&session);
    if let Some((stream, _)) = &audio
        && let Err(e) = session.setup(*stream, setup()).await
    {
        // The video alone is still worth recording.
        tracing::warn!(error = %e, "the camera's audio cannot be set up: recording video only");
        audio = None;
    }
    let playing = session.play(PlayOptions::default()).await.map_err(|e| e.to_string())?;
    let demuxed = playing.demuxed().map_err(|e| e.to_string())?;
    Ok(Playing { demuxed, video, audio, codec, connection })
}

/// Connects and asks DESCRIBE, and finds the connection retina opened for it among this
/// process's sockets (retina does not hand it out). Connections to one host are opened one
/// at a time so that it can be told apart from its siblings' (a recorder with many channels
/// behind one address); a host slow to answer makes the next wait at most `OPENING_WAIT`,
/// and a connection not told apart is only read without batching.
async fn describe(url: Url, options: SessionOptions) -> Result<(Session<Described>, Option<TcpStream>), String> {
    // The RTSP default port: the url crate knows no default for rtsp://.
    let port = url.port().unwrap_or(554);
    let host = match url.host() {
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    let turn = {
        let mut opening = OPENING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        opening.entry(format!("{}:{port}", url.host_str().unwrap_or_default())).or_default().clone()
    };
    let _turn = tokio::time::timeout(OPENING_WAIT, turn.lock_owned()).await.ok();
    let before = socket::socket_inodes();
    let session = Session::describe(url, options).await.map_err(|e| e.to_string())?;
    Ok((session, socket::new_connection(&before, host, port)))
}

/// The first AAC stream of the session, with the `mp4a` entry its SDP gives.
fn aac_track(session: &Session<Described>) -> Option<(usize, AudioTrack)> {
    session.streams().iter().enumerate().find_map(|(i, s)| {
        if s.media() != "audio" || s.encoding_name() != "mpeg4-generic" {
            return None;
        }
        let Some(ParametersRef::Audio(params)) = s.parameters() else { return None };
        let sample_entry = params.mp4_sample_entry().build().ok()?;
        Some((i, AudioTrack { sample_entry, rate: params.clock_rate() }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url() {
        let (url, creds) = split_credentials("rtsp://viewer:p%40ss%2Fw%3Ard@10.0.0.5:554/s1?x=1").expect("url");
        assert_eq!(url.as_str(), "rtsp://10.0.0.5:554/s1?x=1");
        let creds = creds.expect("creds");
        assert_eq!((creds.username.as_str(), creds.password.as_str()), ("viewer", "p@ss/w:rd"));
        let (url, creds) = split_credentials("rtsp://10.0.0.5/s1").expect("url");
        assert_eq!((url.as_str(), creds), ("rtsp://10.0.0.5/s1", None));
        assert!(split_credentials("rtsp://[bad").is_err());
    }
}
