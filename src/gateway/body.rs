//! The one body type used on both sides of the proxy, and the few helpers
//! that build or bound it. Bodies stream: only routes that must read a body
//! (sync `credentialId`, ActionKit action names, filtered responses) call
//! [`read_limited`], and only up to a fixed cap.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, Limited};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body, boxed once so requests and responses of any origin
/// (hyper's `Incoming`, a buffered rewrite, an error) share one type.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Wraps any body whose error converts into [`BoxError`].
pub fn stream<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("body is larger than the limit")]
    TooLarge,
    #[error("body could not be read: {0}")]
    Io(#[source] BoxError),
}

/// Reads a whole body, refusing it as soon as it passes `limit` bytes (also
/// when it is chunked and announced no length).
pub async fn read_limited<B>(body: B, limit: u64) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ReadError::TooLarge)
            } else {
                Err(ReadError::Io(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_limited_accepts_up_to_the_limit_and_refuses_past_it() {
        let ok = read_limited(full(vec![b'a'; 10]), 10).await.unwrap();
        assert_eq!(ok.len(), 10);
        let err = read_limited(full(vec![b'a'; 11]), 10).await.unwrap_err();
        assert!(matches!(err, ReadError::TooLarge));
        assert!(read_limited(empty(), 0).await.unwrap().is_empty());
    }
}
