//! Runs small-language-model calls off the async workers: a dedicated pool of threads, dynamic
//! batching of second opinions (up to `max_batch`, waiting at most `max_wait_ms` for more), a
//! per-call timeout and a concurrency limit. A call that fails, times out or finds the pool
//! saturated returns an error, and the caller publishes the fast label as `degraded`: nothing
//! stalls and nothing is lost.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};
use triage_core::config::ExecutorConfig;

use crate::error::ServiceError;

/// What to ask the small language model.
#[derive(Debug, Clone, PartialEq)]
pub enum SlmRequest {
    /// Class probabilities for a message (in the fast model's label order).
    SecondOpinion(String),
    /// A drafted reply to a message the fast classifier labelled `label`.
    Generate {
        /// The message.
        text: String,
        /// Its label.
        label: String,
    },
}

/// What the small language model answered.
#[derive(Debug, Clone, PartialEq)]
pub enum SlmResponse {
    /// Second-opinion probabilities.
    Probabilities(Vec<f32>),
    /// A drafted reply.
    Reply(String),
}

/// Why a backend call failed: the typed errors of the models, or of a stand-in.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The model failed (ONNX Runtime, tokenizer, a missing file...).
    #[error(transparent)]
    Models(#[from] triage_models::ModelsError),
    /// A reply was asked of a backend loaded without a generator.
    #[error("no generator loaded (no generative labels configured)")]
    NoGenerator,
    /// An answer of the wrong shape.
    #[error("{0}")]
    Malformed(String),
    /// Fault injection (`[slm.fault]`).
    #[error("injected fault")]
    Injected,
}

/// Why an SLM call gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SlmError {
    /// The call took longer than the timeout.
    #[error("SLM call timed out after {0} ms")]
    Timeout(u64),
    /// The queue was full.
    #[error("SLM executor overloaded")]
    Overloaded,
    /// The model failed.
    #[error("SLM failed: {0}")]
    Backend(Arc<BackendError>),
    /// The executor has shut down.
    #[error("SLM executor stopped")]
    Closed,
}

impl SlmError {
    /// A short name for metrics and records.
    pub fn kind(&self) -> &'static str {
        match self {
            SlmError::Timeout(_) => "timeout",
            SlmError::Overloaded => "overloaded",
            SlmError::Backend(_) => "error",
            SlmError::Closed => "closed",
        }
    }
}

/// The models behind the executor. Implementations must be thread-safe; they are called from
/// the executor's threads only.
pub trait SlmBackend: Send + Sync {
    /// Probabilities (fast model's label order) for each text.
    fn second_opinion(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError>;
    /// A reply to `text`, which the fast classifier labelled `label`.
    fn generate(&self, text: &str, label: &str) -> Result<String, BackendError>;
}

struct Job {
    request: SlmRequest,
    reply: oneshot::Sender<Result<SlmResponse, SlmError>>,
    deadline: Instant,
}

/// The SLM executor. Dropping it stops its threads once queued work is done.
pub struct Executor {
    tx: Option<SyncSender<Job>>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    generate_timeout: Duration,
    workers: Vec<JoinHandle<()>>,
}

impl Executor {
    /// Starts the worker threads.
    pub fn start(
        backend: Arc<dyn SlmBackend>,
        config: ExecutorConfig,
    ) -> Result<Self, ServiceError> {
        if config.threads == 0 || config.max_batch == 0 || config.max_concurrency == 0 {
            return Err(ServiceError::Config(
                "slm.executor threads, max_batch and max_concurrency must be > 0".into(),
            ));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(config.max_concurrency);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..config.threads)
            .map(|i| {
                let (rx, backend, config) = (Arc::clone(&rx), Arc::clone(&backend), config.clone());
                std::thread::Builder::new()
                    .name(format!("triage-slm-{i}"))
                    .spawn(move || worker(&rx, backend.as_ref(), &config))
                    .map_err(|e| ServiceError::Internal(format!("cannot start SLM threads: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            tx: Some(tx),
            permits: Arc::new(Semaphore::new(config.max_concurrency)),
            timeout: Duration::from_millis(config.timeout_ms),
            generate_timeout: Duration::from_millis(config.generate_timeout_ms),
            workers,
        })
    }

    /// Asks the model, waiting at most the configured timeout (queueing included).
    pub async fn call(&self, request: SlmRequest) -> Result<SlmResponse, SlmError> {
        let timeout = match request {
            SlmRequest::Generate { .. } => self.generate_timeout,
            SlmRequest::SecondOpinion(_) => self.timeout,
        };
        let deadline = Instant::now() + timeout;
        let timeout_ms = timeout.as_millis() as u64;
        let tdeadline = tokio::time::Instant::from_std(deadline);
        let _permit =
            match tokio::time::timeout_at(tdeadline, Arc::clone(&self.permits).acquire_owned())
                .await
            {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return Err(SlmError::Closed),
                Err(_) => return Err(SlmError::Timeout(timeout_ms)),
            };
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(SlmError::Closed)?;
        match tx.try_send(Job {
            request,
            reply,
            deadline,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(SlmError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(SlmError::Closed),
        }
        match tokio::time::timeout_at(tdeadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SlmError::Closed),
            Err(_) => Err(SlmError::Timeout(timeout_ms)),
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn live(job: &Job) -> bool {
    if job.reply.is_closed() {
        return false; // the caller gave up
    }
    Instant::now() < job.deadline
}

fn worker(rx: &Mutex<Receiver<Job>>, backend: &dyn SlmBackend, config: &ExecutorConfig) {
    loop {
        // Take one job, then (for second opinions) gather a batch while holding the queue.
        let (batch, deferred) = {
            let Ok(rx) = rx.lock() else { return };
            let Ok(first) = rx.recv() else { return };
            let mut batch = vec![first];
            let mut deferred = Vec::new();
            if matches!(batch[0].request, SlmRequest::SecondOpinion(_)) {
                let until = Instant::now() + Duration::from_millis(config.max_wait_ms);
                while batch.len() < config.max_batch {
                    let left = until.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(job) if matches!(job.request, SlmRequest::SecondOpinion(_)) => {
                            batch.push(job)
                        }
                        Ok(job) => deferred.push(job),
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
            (batch, deferred)
        };
        run(batch, backend);
        for job in deferred {
            run(vec![job], backend);
        }
    }
}

fn run(jobs: Vec<Job>, backend: &dyn SlmBackend) {
    let (live_jobs, dead): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(live);
    for job in dead {
        let _ = job.reply.send(Err(SlmError::Timeout(0)));
    }
    if live_jobs.is_empty() {
        return;
    }
    if let SlmRequest::Generate { text, label } = &live_jobs[0].request {
        let result = backend
            .generate(text, label)
            .map(SlmResponse::Reply)
            .map_err(|e| SlmError::Backend(Arc::new(e)));
        for job in live_jobs {
            let _ = job.reply.send(result.clone());
        }
        return;
    }
    let texts: Vec<&str> = live_jobs
        .iter()
        .map(|j| match &j.request {
            SlmRequest::SecondOpinion(t) => t.as_str(),
            SlmRequest::Generate { text, .. } => text.as_str(),
        })
        .collect();
    match backend.second_opinion(&texts) {
        Ok(probs) if probs.len() == live_jobs.len() => {
            for (job, p) in live_jobs.into_iter().zip(probs) {
                let _ = job.reply.send(Ok(SlmResponse::Probabilities(p)));
            }
        }
        Ok(probs) => {
            let e = SlmError::Backend(Arc::new(BackendError::Malformed(format!(
                "{} answers for {} texts",
                probs.len(),
                texts.len()
            ))));
            for job in live_jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            let e = SlmError::Backend(Arc::new(e));
            for job in live_jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Logic tests with a stand-in backend; the real models are exercised in tests/.
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake {
        delay: Duration,
        fail: bool,
        biggest_batch: AtomicUsize,
    }

    impl SlmBackend for Fake {
        fn second_opinion(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError> {
            self.biggest_batch.fetch_max(texts.len(), Ordering::Relaxed);
            std::thread::sleep(self.delay);
            if self.fail {
                return Err(BackendError::Injected);
            }
            Ok(texts.iter().map(|t| vec![t.len() as f32, 0.0]).collect())
        }
        fn generate(&self, text: &str, label: &str) -> Result<String, BackendError> {
            std::thread::sleep(self.delay);
            Ok(format!("{label}: {text}"))
        }
    }

    fn exec(delay_ms: u64, fail: bool, timeout_ms: u64) -> (Executor, Arc<Fake>) {
        let fake = Arc::new(Fake {
            delay: Duration::from_millis(delay_ms),
            fail,
            biggest_batch: AtomicUsize::new(0),
        });
        let e = Executor::start(
            fake.clone(),
            ExecutorConfig {
                timeout_ms,
                max_wait_ms: 20,
                ..Default::default()
            },
        )
        .unwrap();
        (e, fake)
    }

    #[tokio::test]
    async fn batches_concurrent_second_opinions() {
        let (e, fake) = exec(30, false, 5_000);
        let calls = (0..40).map(|i| e.call(SlmRequest::SecondOpinion("x".repeat(i))));
        let results = futures::future::join_all(calls).await;
        for (i, r) in results.into_iter().enumerate() {
            assert_eq!(r.unwrap(), SlmResponse::Probabilities(vec![i as f32, 0.0]));
        }
        assert!(
            fake.biggest_batch.load(Ordering::Relaxed) > 1,
            "no batching happened"
        );
        let reply = e
            .call(SlmRequest::Generate {
                text: "hi".into(),
                label: "neg".into(),
            })
            .await
            .unwrap();
        assert_eq!(reply, SlmResponse::Reply("neg: hi".into()));
    }

    #[tokio::test]
    async fn timeouts_and_failures_are_errors_not_stalls() {
        let (e, _) = exec(300, false, 50);
        let t0 = Instant::now();
        let r = e.call(SlmRequest::SecondOpinion("slow".into())).await;
        assert!(matches!(r, Err(SlmError::Timeout(50))), "{r:?}");
        assert!(t0.elapsed() < Duration::from_millis(250));
        let (e, _) = exec(0, true, 1_000);
        let r = e.call(SlmRequest::SecondOpinion("x".into())).await;
        assert!(matches!(r, Err(SlmError::Backend(_))));
    }
}
