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

/// Checks of a model configuration whose errors name its file (`path`), shared by the
/// families' `validate` functions.
pub(crate) struct ConfigCheck<'a>(pub &'a str);

impl ConfigCheck<'_> {
    /// A [`ZooError::Config`] for this file.
    pub fn fail<T>(&self, msg: String) -> Result<T> {
        Err(ZooError::Config {
            path: self.0.into(),
            msg,
        })
    }

    /// Every field is at least 1.
    pub fn positive(&self, fields: &[(&str, usize)]) -> Result<()> {
        match fields.iter().find(|(_, v)| *v == 0) {
            Some((k, _)) => self.fail(format!("{k} must be at least 1")),
            None => Ok(()),
        }
    }

    /// `value` is a multiple of `divisor` (both named; the divisor is non-zero).
    pub fn divides(&self, value: (&str, usize), divisor: (&str, usize)) -> Result<()> {
        if divisor.1 != 0 && value.1.is_multiple_of(divisor.1) {
            Ok(())
        } else {
            self.fail(format!(
                "{} {} is not a multiple of {} {}",
                value.0, value.1, divisor.0, divisor.1
            ))
        }
    }
}

/// A config from JSON text (Hugging Face's `config.json` keys), then validated.
pub(crate) fn parse_json_config<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &str,
    validate: impl FnOnce(&T, &str) -> Result<()>,
) -> Result<T> {
    let c: T = serde_json::from_str(text).map_err(|e| ZooError::Config {
        path: path.into(),
        msg: e.to_string(),
    })?;
    validate(&c, path)?;
    Ok(c)
}
