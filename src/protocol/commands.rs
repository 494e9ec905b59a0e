//! Command names and the error codes of replies: what topics, allow lists and
//! callers branch on. Pure.

/// Every command, as topics and allow lists name them.
pub const COMMAND_NAMES: &[&str] =
    &["status", "record", "snapshot", "lock", "unlock", "export", "backup", "sweep", "reload", "share"];

/// Why a command was not done; the `code` of an error reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request or its args are malformed.
    BadRequest,
    /// No such command.
    UnknownCommand,
    /// Not signed, unknown key or bad signature.
    Unauthorized,
    /// The key (or, with `auth = "none"`, the allow list) does not permit this command.
    Forbidden,
    /// `auth.ts` is more than 30 s from the node's clock.
    Stale,
    /// The nonce was used before.
    Replayed,
    /// The camera, policy, lock or footage named does not exist.
    NotFound,
    /// The node cannot take it now (queue full, same job running); try again.
    Busy,
    /// It was tried and failed.
    Failed,
}

impl ErrorCode {
    /// Every code, for the reference docs' check.
    pub const ALL: [ErrorCode; 9] = [
        Self::BadRequest,
        Self::UnknownCommand,
        Self::Unauthorized,
        Self::Forbidden,
        Self::Stale,
        Self::Replayed,
        Self::NotFound,
        Self::Busy,
        Self::Failed,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnknownCommand => "unknown_command",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Stale => "stale",
            Self::Replayed => "replayed",
            Self::NotFound => "not_found",
            Self::Busy => "busy",
            Self::Failed => "failed",
        }
    }
}
