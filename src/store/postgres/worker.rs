//! The one bridge between maestro's async code and the blocking PostgreSQL
//! client. `postgres::Client` drives a tokio runtime of its own and panics
//! when it is used on a thread that already runs one, and the store's
//! traits are called from inside tokio tasks. So the client lives on a
//! dedicated thread, and every call is a job sent to it; the caller waits
//! for the answer, blocking as a rusqlite call would.

use std::sync::mpsc;
use std::thread::JoinHandle;

use postgres::{Client, NoTls};

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// The connection thread went away (it panicked in a job).
#[derive(Debug)]
pub struct Gone;

impl From<Gone> for crate::store::StoreError {
    fn from(_: Gone) -> crate::store::StoreError {
        crate::store::StoreError::Disconnected
    }
}

pub struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Connect on a new thread; the connection error, if any, comes back here.
    pub fn connect(url: &str) -> Result<Worker, Box<dyn std::error::Error + Send + Sync>> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::sync_channel(1);
        let url = url.to_string();
        let thread = std::thread::Builder::new()
            .name("maestro-postgres".into())
            .spawn(move || {
                // libpq's convention: a URL without a password takes
                // $PGPASSWORD, so the URL itself can be written down.
                let config = url.parse::<postgres::Config>().map(|mut c| {
                    if c.get_password().is_none()
                        && let Some(p) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty())
                    {
                        c.password(p.as_encoded_bytes());
                    }
                    c
                });
                let mut client = match config.and_then(|c| c.connect(NoTls)) {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        client
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                for job in queue {
                    job(&mut client);
                }
            })?;
        connected
            .recv()
            .map_err(|_| "the PostgreSQL connection thread ended before it connected")??;
        Ok(Worker {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Run `job` on the connection and wait for its result.
    pub fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Client) -> R + Send + 'static,
    ) -> Result<R, Gone> {
        let (reply, answer) = mpsc::sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or(Gone)?;
        jobs.send(Box::new(move |client| {
            let _ = reply.send(job(client));
        }))
        .map_err(|_| Gone)?;
        answer.recv().map_err(|_| Gone)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the thread, which closes the connection.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
