//! The server's errors: each carries the protocol's status (an HTTP code, a gRPC code) and a
//! message that names the model, tensor and shapes it is about.

use thiserror::Error;

/// What kind of failure, which decides the status a client sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A malformed or inconsistent request (400 / INVALID_ARGUMENT).
    BadRequest,
    /// No such model or version (404 / NOT_FOUND).
    NotFound,
    /// The model is not ready, or its queue is full (503 / UNAVAILABLE): back-pressure.
    Unavailable,
    /// The request waited past its timeout (504 / DEADLINE_EXCEEDED).
    Timeout,
    /// A missing or wrong bearer token (401 / UNAUTHENTICATED).
    Unauthorized,
    /// A body or tensor over the server's limits (413 / RESOURCE_EXHAUSTED).
    TooLarge,
    /// A model repository entry that cannot be read (400 on load / reported as the reason a
    /// model is unavailable).
    BadConfig,
    /// The device failed (500 / INTERNAL).
    Internal,
}

#[derive(Clone, Debug, Error)]
#[error("{message}")]
pub struct ServeError {
    pub kind: ErrorKind,
    pub message: String,
}

macro_rules! ctor {
    ($($f:ident => $k:ident),* $(,)?) => {
        impl ServeError {
            $(pub fn $f(message: impl Into<String>) -> Self {
                ServeError { kind: ErrorKind::$k, message: message.into() }
            })*
        }
    };
}

ctor! {
    bad_request => BadRequest,
    not_found => NotFound,
    unavailable => Unavailable,
    timeout => Timeout,
    unauthorized => Unauthorized,
    too_large => TooLarge,
    bad_config => BadConfig,
    internal => Internal,
}

impl ServeError {
    /// The HTTP status the REST API answers with.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            ErrorKind::BadRequest | ErrorKind::BadConfig => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Unauthorized => 401,
            ErrorKind::TooLarge => 413,
            ErrorKind::Internal => 500,
        }
    }

    /// The gRPC status code.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.kind {
            ErrorKind::BadRequest | ErrorKind::BadConfig => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Timeout => tonic::Code::DeadlineExceeded,
            ErrorKind::Unauthorized => tonic::Code::Unauthenticated,
            ErrorKind::TooLarge => tonic::Code::ResourceExhausted,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }

    /// The label Triton's failure counter uses.
    pub fn metric_reason(&self) -> &'static str {
        match self.kind {
            ErrorKind::Unavailable => "REJECTED",
            ErrorKind::Timeout => "CANCELED",
            ErrorKind::Internal => "BACKEND",
            _ => "OTHER",
        }
    }
}

impl From<ServeError> for tonic::Status {
    fn from(e: ServeError) -> Self {
        tonic::Status::new(e.grpc_code(), e.message)
    }
}
