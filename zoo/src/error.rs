//! The zoo's one error type: what went wrong building, loading or running a model, or reading
//! its input, each with the file, tensor or node it concerns.

use crate::weights::WeightsError;

/// Why a zoo model or task failed.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// Building or running the graph (a node, op and shapes are named in the message).
    #[error(transparent)]
    Graph(#[from] sfumato_core::Error),
    /// A weights file that cannot be read or does not fit the model.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// A model configuration (TOML or JSON) with a bad or unknown key.
    #[error("config {path}: {msg}")]
    Config { path: String, msg: String },
    /// A tokenizer file that cannot be read, or text it cannot encode.
    #[error("tokenizer {path}: {msg}")]
    Tokenizer { path: String, msg: String },
    /// An input image that cannot be decoded.
    #[error("image {path}: {msg}")]
    Image { path: String, msg: String },
    /// An input the model cannot take (a prompt longer than the context, no sentences, ...).
    #[error("{0}")]
    Input(String),
    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ZooError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ZooError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The zoo's result.
pub type Result<T, E = ZooError> = std::result::Result<T, E>;
