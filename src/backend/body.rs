//! Reading a reply's body with a cap: checked against Content-Length first, then chunk by
//! chunk, so an endless body stops at the cap rather than at the machine's memory. Every
//! reply ragprobe reads goes through here (models, services, Chroma, MLflow, collectors).

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the reply is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the reply did not finish in time")]
    Timeout,
    #[error("reading the reply: {0}")]
    Read(String),
}

/// The body of `response`, at most `limit` bytes.
pub async fn read_capped(
    response: &mut reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() as u64 + chunk.len() as u64 > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(err) if err.is_timeout() => return Err(BodyError::Timeout),
            Err(err) => return Err(BodyError::Read(super::client::root_cause(&err))),
        }
    }
}
