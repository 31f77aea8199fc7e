//! Accepted TCP connections of one simulated node, so that stopping the node
//! can cut them off the way a crashed host would.
//!
//! russh owns the stream once the session runs, and it offers no way to abort
//! a session from outside (the join handle of `run_stream` only detaches). So
//! every accepted stream is wrapped in [`TrackedStream`], which registers its
//! file descriptor in the node's [`ConnSet`]; stopping the node calls
//! `shutdown(SHUT_RDWR)` on each registered socket. The session then reads
//! EOF, ends, drops its handler, and the handler's commands are killed.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Counters;

/// The live connections of one node.
#[derive(Default)]
pub(crate) struct ConnSet {
    inner: Mutex<ConnSetInner>,
}

#[derive(Default)]
struct ConnSetInner {
    stopped: bool,
    next_id: u64,
    fds: HashMap<u64, RawFd>,
}

impl ConnSet {
    fn lock(&self) -> MutexGuard<'_, ConnSetInner> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an accepted stream. Returns `None` (and closes the stream)
    /// if the node has been stopped in the meantime.
    pub(crate) fn track(
        self: &Arc<Self>,
        stream: TcpStream,
        counters: &Arc<Counters>,
    ) -> Option<TrackedStream> {
        let mut inner = self.lock();
        if inner.stopped {
            return None;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.fds.insert(id, stream.as_raw_fd());
        counters.open_connections.fetch_add(1, Ordering::Relaxed);
        Some(TrackedStream {
            stream,
            id,
            set: Arc::clone(self),
            counters: Arc::clone(counters),
        })
    }

    /// Marks the node stopped and shuts down every live connection.
    /// Returns false if it was already stopped.
    pub(crate) fn stop(&self) -> bool {
        let mut inner = self.lock();
        let was_running = !inner.stopped;
        inner.stopped = true;
        for &fd in inner.fds.values() {
            // SAFETY: `fd` belongs to a `TcpStream` that is still alive: a
            // `TrackedStream` removes its entry under this same lock in `drop`,
            // before its stream (and so the descriptor) is closed.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
        was_running
    }
}

/// A `TcpStream` that stays registered in its node's [`ConnSet`] while alive.
pub(crate) struct TrackedStream {
    stream: TcpStream,
    id: u64,
    set: Arc<ConnSet>,
    counters: Arc<Counters>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        // Runs before the `stream` field is dropped, i.e. before the fd closes.
        self.set.lock().fds.remove(&self.id);
        self.counters
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
