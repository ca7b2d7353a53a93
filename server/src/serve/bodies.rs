//! Owns the wrappers the accept loop puts around each connection's bytes: the socket that
//! tells the idle watch when a byte arrives, the request body with its timeout
//! (`server.request_timeout_secs`), and the response body that keeps the connection busy
//! until it has been sent.
//!
//! Invariant: an ordinary request body must arrive whole within the timeout; an upload
//! body is only cut when it stops moving for that long, so a large upload on a slow link
//! is never cut while bytes keep coming.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::connections::{Busy, Conn, Connections};

/// A socket that notes on its connection when bytes arrive.
pub struct Watched<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, conn: Arc<Conn>) -> Self {
        Watched { inner, conn }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.heard();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How long a request body may take.
#[derive(Debug, Clone, Copy)]
pub enum BodyClock {
    /// The whole body within this, counted from the parsed head.
    Whole(Duration),
    /// No gap between two chunks longer than this (upload bodies).
    Progress(Duration),
}

/// A request body under a [`BodyClock`]. The timer is only armed once the body has to be
/// waited for, so bodies that are already here (or empty) cost no timer.
pub struct TimedBody {
    inner: Incoming,
    clock: BodyClock,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
    connections: Arc<Connections>,
}

impl TimedBody {
    pub fn new(inner: Incoming, clock: BodyClock, connections: Arc<Connections>) -> Self {
        let limit = match clock {
            BodyClock::Whole(d) | BodyClock::Progress(d) => d,
        };
        TimedBody {
            inner,
            clock,
            deadline: Instant::now() + limit,
            timer: None,
            timed_out: false,
            connections,
        }
    }
}

impl Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let BodyClock::Progress(gap) = this.clock {
                    this.deadline = Instant::now() + gap;
                    if let Some(timer) = this.timer.as_mut() {
                        timer.as_mut().reset(this.deadline);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.timed_out = true;
                    this.connections
                        .counters()
                        .body_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(Box::new(crate::http::BodyTimedOut))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds its request's [`Busy`] mark until it is dropped: sent, or
/// the connection gone.
pub struct Tracked<B> {
    inner: B,
    _busy: Busy,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, busy: Busy) -> Self {
        Tracked { inner, _busy: busy }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
