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

/// A body that fails when no frame arrives for `idle`: a Paragon that
/// stalls in the middle of a response must not hold the client, and the
/// upstream connection, forever. The timer is armed only while the body is
/// waiting, so a body that is already there (most answers) costs none.
pub struct StallGuard<B> {
    inner: B,
    idle: std::time::Duration,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<B> StallGuard<B> {
    pub fn new(inner: B, idle: std::time::Duration) -> Self {
        StallGuard {
            inner,
            idle,
            timer: None,
        }
    }
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("Paragon's response body stalled")]
pub struct Stalled;

impl<B> http_body::Body for StallGuard<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let idle = this.idle;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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

/// [`read_limited`] for the one body type, read frame by frame: no
/// generic error bound, which trips the compiler's higher-ranked `Send`
/// check in a boxed future that reaches the pipeline again (the rooms
/// above the gateway).
pub async fn read_body(mut body: Body, limit: u64) -> Result<Bytes, ReadError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Io)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body fed by a channel: frames arrive when the test sends them.
    struct ChanBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl http_body::Body for ChanBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_idle_limit_and_a_moving_one_does_not() {
        use std::time::Duration;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let mut guarded = StallGuard::new(ChanBody(rx), Duration::from_secs(5));
        // Frames 4 s apart (each wait under the limit, 12 s in all), then
        // nothing, without ending the body.
        let sender = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tx.send(Bytes::from_static(b"x")).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        for _ in 0..3 {
            let f = guarded.frame().await.unwrap().unwrap();
            assert_eq!(f.into_data().unwrap(), Bytes::from_static(b"x"));
        }
        let started = tokio::time::Instant::now();
        let err = guarded.frame().await.unwrap().unwrap_err();
        assert!(err.is::<Stalled>(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        sender.abort();
    }

    #[tokio::test]
    async fn read_limited_accepts_up_to_the_limit_and_refuses_past_it() {
        let ok = read_limited(full(vec![b'a'; 10]), 10).await.unwrap();
        assert_eq!(ok.len(), 10);
        let err = read_limited(full(vec![b'a'; 11]), 10).await.unwrap_err();
        assert!(matches!(err, ReadError::TooLarge));
        assert!(read_limited(empty(), 0).await.unwrap().is_empty());
    }
}
