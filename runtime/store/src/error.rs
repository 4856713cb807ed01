use civicflow_engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Work turned away for now (its unit's rules are busy); worth retrying shortly.
    #[error("busy: {0}")]
    Busy(String),
    /// Another request with the same Idempotency-Key committed first; `once` answers with
    /// its answer instead.
    #[error("a request with this Idempotency-Key has been answered")]
    KeyAnswered,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A definition or overlay refused at publication, with every located reason.
    #[error("{}", refused(.0, .1))]
    Refused(String, Vec<civicflow_engine::Diagnostic>),
}

fn refused(message: &str, diagnostics: &[civicflow_engine::Diagnostic]) -> String {
    let mut out = message.to_string();
    for d in diagnostics {
        out.push_str(&format!("\n  {d}"));
    }
    out
}

impl StoreError {
    /// A short stable code for APIs and scenario expectations.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Engine(e) => e.code(),
            StoreError::NotFound(_) => "not_found",
            StoreError::Invalid(_) => "invalid",
            StoreError::Db(_) => "database",
            StoreError::Busy(_) => "busy",
            StoreError::KeyAnswered => "key_answered",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Refused(..) => "invalid",
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
