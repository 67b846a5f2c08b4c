//! Runs small-language-model calls off the async workers: a dedicated pool of threads, dynamic
//! batching of second opinions (up to `max_batch`, waiting at most `max_wait_ms` for more), a
//! per-call timeout, and an admission stage in front of the models ([`super::admission`]).
//!
//! When the SLM cannot serve every call routed to it, `admission` decides who gets it:
//! - `urgency` (the default): second opinions wait at most their admission window, ranked by
//!   the router's urgency; the workers take the most urgent as they free up, and the others are
//!   answered [`SlmError::Shed`] (published `over_budget`, fast label) when their window ends,
//!   or at once when the queue is full of more urgent ones. The window is
//!   `admission_window_ms`, lengthened to two model calls' time when that is longer, so that
//!   the SLM chooses among every call that arrived since it last chose. Drafted replies wait
//!   first come, first served, at most `max_waiting_replies` of them.
//! - `arrival`: first come, first served; a call waits its turn within its timeout.
//!
//! A call a worker took that then fails or outlives its timeout is answered with an error, and
//! the caller publishes the fast label as `degraded`: nothing stalls and nothing is lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use triage_core::config::{Admission, ExecutorConfig};
use triage_router::Shed;

use super::admission::{Kind, Offer, Waiting};
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
    /// The SLM was saturated and the admission stage gave its capacity to more urgent calls:
    /// the call was never run.
    #[error("{0}")]
    Shed(Shed),
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
            SlmError::Shed(_) => "shed",
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
    /// The call's own deadline (its timeout, queueing included).
    deadline: Instant,
    /// Its timeout, in milliseconds.
    timeout_ms: u64,
    /// What it gets if it is still waiting when its wait ends.
    expired: Expired,
}

struct State {
    waiting: Waiting<Job>,
    closed: bool,
}

/// The waiting calls, shared by the callers and the workers.
struct Shared {
    state: Mutex<State>,
    /// Signalled when a call arrives, and on close.
    work: Condvar,
    /// How long a model call for second opinions takes, in microseconds (a moving average).
    call_us: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records how long a model call for second opinions took.
    fn record_call(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u64::MAX / 8)) as u64;
        let old = self.call_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { (old * 4 + us) / 5 };
        self.call_us.store(new, Ordering::Relaxed);
    }
}

/// What a call gets when it is still waiting at the end of its wait.
#[derive(Debug, Clone, Copy)]
enum Expired {
    /// Shed at the end of its admission window (`over_budget`).
    Shed(Shed),
    /// Timed out (`degraded`).
    Timeout(u64),
}

impl Expired {
    fn error(self) -> SlmError {
        match self {
            Expired::Shed(s) => SlmError::Shed(s),
            Expired::Timeout(ms) => SlmError::Timeout(ms),
        }
    }
}

/// The SLM executor. Dropping it stops its threads once queued work is done.
pub struct Executor {
    shared: Arc<Shared>,
    config: ExecutorConfig,
    workers: Vec<JoinHandle<()>>,
}

impl Executor {
    /// Starts the worker threads.
    pub fn start(
        backend: Arc<dyn SlmBackend>,
        config: ExecutorConfig,
    ) -> Result<Self, ServiceError> {
        config.validate().map_err(ServiceError::Config)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                waiting: Waiting::new(
                    config.admission,
                    config.max_concurrency,
                    config.max_waiting_replies,
                ),
                closed: false,
            }),
            work: Condvar::new(),
            call_us: AtomicU64::new(0),
        });
        let workers = (0..config.threads)
            .map(|i| {
                let (shared, backend, config) =
                    (Arc::clone(&shared), Arc::clone(&backend), config.clone());
                std::thread::Builder::new()
                    .name(format!("triage-slm-{i}"))
                    .spawn(move || worker(&shared, backend.as_ref(), &config))
                    .map_err(|e| ServiceError::Internal(format!("cannot start SLM threads: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            shared,
            config,
            workers,
        })
    }

    /// The admission window in milliseconds: `admission_window_ms`, or the time of two model
    /// calls per worker thread when that is longer. A take happens about once per model call
    /// and thread, so every waiting call meets at least two of them: the SLM then chooses among
    /// all the calls that arrived since it last chose, not among a recent few.
    fn window_ms(&self) -> u64 {
        let call_us = self.shared.call_us.load(Ordering::Relaxed);
        let floor_ms = (2 * call_us / self.config.threads as u64).div_ceil(1000);
        self.config.admission_window_ms.max(floor_ms)
    }

    /// Asks the model. `urgency` ranks a second opinion against the others waiting (higher
    /// first; the router's [`triage_router::Routing::urgency`]). The call waits for a worker
    /// until its admission window ends (`urgency` mode; then [`SlmError::Shed`]) or its timeout
    /// (then [`SlmError::Timeout`]); a call a worker took has until its timeout to be answered.
    pub async fn call(&self, request: SlmRequest, urgency: f32) -> Result<SlmResponse, SlmError> {
        let kind = match request {
            SlmRequest::Generate { .. } => Kind::Reply,
            SlmRequest::SecondOpinion(_) => Kind::Opinion,
        };
        let timeout_ms = match kind {
            Kind::Reply => self.config.generate_timeout_ms,
            Kind::Opinion => self.config.timeout_ms,
        };
        let start = Instant::now();
        let deadline = start + Duration::from_millis(timeout_ms);
        let window_ms = self.window_ms();
        let (wait_until, expired) = match kind {
            Kind::Opinion
                if self.config.admission == Admission::Urgency && window_ms < timeout_ms =>
            {
                (
                    start + Duration::from_millis(window_ms),
                    Expired::Shed(Shed::Window { ms: window_ms }),
                )
            }
            _ => (deadline, Expired::Timeout(timeout_ms)),
        };
        let (reply, mut rx) = oneshot::channel();
        let job = Job {
            request,
            reply,
            deadline,
            timeout_ms,
            expired,
        };
        let (ticket, pushed_out) = {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(SlmError::Closed);
            }
            let offer = match kind {
                Kind::Opinion => st.waiting.offer_opinion(job, urgency, wait_until),
                Kind::Reply => st.waiting.offer_reply(job, wait_until),
            };
            match offer {
                Offer::Refused(_, shed) => return Err(SlmError::Shed(shed)),
                Offer::Queued { ticket, pushed_out } => (ticket, pushed_out),
            }
        };
        self.shared.work.notify_one();
        if let Some(out) = pushed_out {
            let _ = out.reply.send(Err(SlmError::Shed(Shed::QueueFull {
                capacity: self.config.max_concurrency,
            })));
        }
        // Wait to be taken (and answered) until the end of the wait.
        match tokio::time::timeout_at(wait_until.into(), &mut rx).await {
            Ok(answer) => return answer.unwrap_or(Err(SlmError::Closed)),
            Err(_) => {
                if self.shared.lock().waiting.withdraw(ticket).is_some() {
                    return Err(expired.error());
                }
            }
        }
        // A worker took it (or pushed it out): its answer comes within the call's timeout.
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(SlmError::Closed),
            Err(_) => Err(SlmError::Timeout(timeout_ms)),
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
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

/// Takes the next work: a reply, or a batch of the most urgent second opinions (waiting up to
/// `max_wait_ms` for a batch to fill). `None` once the executor is closed and drained.
fn next_work(
    shared: &Shared,
    config: &ExecutorConfig,
    last: Option<Kind>,
) -> Option<(Kind, super::admission::Taken<Job>)> {
    let max_wait = Duration::from_millis(config.max_wait_ms);
    let mut st = shared.lock();
    let mut fill_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let Some(kind) = st.waiting.next_kind(last) else {
            if st.closed {
                return None;
            }
            fill_until = None;
            st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        if kind == Kind::Opinion && st.waiting.len(Kind::Opinion) < config.max_batch && !st.closed {
            let until = *fill_until.get_or_insert(now + max_wait);
            if now < until {
                st = shared
                    .work
                    .wait_timeout(st, until - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
        }
        // A second opinion with less time left than a model call takes would time out during
        // the call: it is answered now instead, and its place in the batch goes to one that can
        // still be answered (first come, first served otherwise wastes the SLM on such calls).
        let call = Duration::from_micros(shared.call_us.load(Ordering::Relaxed));
        let fits = |job: &Job| kind == Kind::Reply || job.deadline >= now + call;
        return Some((kind, st.waiting.take(kind, config.max_batch, now, fits)));
    }
}

fn worker(shared: &Shared, backend: &dyn SlmBackend, config: &ExecutorConfig) {
    let mut last = None;
    while let Some((kind, taken)) = next_work(shared, config, last) {
        last = Some(kind);
        for job in taken.expired {
            let _ = job.reply.send(Err(job.expired.error()));
        }
        for job in taken.late {
            let _ = job.reply.send(Err(SlmError::Timeout(job.timeout_ms)));
        }
        match kind {
            Kind::Opinion => {
                let t0 = Instant::now();
                if run(taken.work, backend) {
                    shared.record_call(t0.elapsed());
                }
            }
            Kind::Reply => {
                for job in taken.work {
                    run(vec![job], backend);
                }
            }
        }
    }
}

/// Runs the live jobs (one reply, or a batch of second opinions); whether the model was called.
fn run(jobs: Vec<Job>, backend: &dyn SlmBackend) -> bool {
    let (live_jobs, dead): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(live);
    for job in dead {
        let _ = job.reply.send(Err(SlmError::Timeout(0)));
    }
    if live_jobs.is_empty() {
        return false;
    }
    if let SlmRequest::Generate { text, label } = &live_jobs[0].request {
        let result = backend
            .generate(text, label)
            .map(SlmResponse::Reply)
            .map_err(|e| SlmError::Backend(Arc::new(e)));
        for job in live_jobs {
            let _ = job.reply.send(result.clone());
        }
        return true;
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
    true
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

    fn fake(delay_ms: u64, fail: bool) -> Arc<Fake> {
        Arc::new(Fake {
            delay: Duration::from_millis(delay_ms),
            fail,
            biggest_batch: AtomicUsize::new(0),
        })
    }

    /// An executor whose admission window is long enough that nothing is shed on a busy machine.
    fn exec(delay_ms: u64, fail: bool, timeout_ms: u64) -> (Executor, Arc<Fake>) {
        let fake = fake(delay_ms, fail);
        let e = Executor::start(
            fake.clone(),
            ExecutorConfig {
                timeout_ms,
                max_wait_ms: 20,
                admission_window_ms: 60_000,
                ..Default::default()
            },
        )
        .unwrap();
        (e, fake)
    }

    #[tokio::test]
    async fn batches_concurrent_second_opinions() {
        let (e, fake) = exec(30, false, 5_000);
        let calls = (0..40).map(|i| e.call(SlmRequest::SecondOpinion("x".repeat(i)), 0.5));
        let results = futures::future::join_all(calls).await;
        for (i, r) in results.into_iter().enumerate() {
            assert_eq!(r.unwrap(), SlmResponse::Probabilities(vec![i as f32, 0.0]));
        }
        assert!(
            fake.biggest_batch.load(Ordering::Relaxed) > 1,
            "no batching happened"
        );
        let reply = e
            .call(
                SlmRequest::Generate {
                    text: "hi".into(),
                    label: "neg".into(),
                },
                0.5,
            )
            .await
            .unwrap();
        assert_eq!(reply, SlmResponse::Reply("neg: hi".into()));
    }

    #[tokio::test]
    async fn timeouts_and_failures_are_errors_not_stalls() {
        let (e, _) = exec(300, false, 50);
        let t0 = Instant::now();
        let r = e.call(SlmRequest::SecondOpinion("slow".into()), 0.5).await;
        assert!(matches!(r, Err(SlmError::Timeout(50))), "{r:?}");
        assert!(t0.elapsed() < Duration::from_millis(250));
        let (e, _) = exec(0, true, 1_000);
        let r = e.call(SlmRequest::SecondOpinion("x".into()), 0.5).await;
        assert!(matches!(r, Err(SlmError::Backend(_))));
    }

    /// Under overload, the SLM serves the most urgent of the waiting calls, and the others are
    /// shed at the end of their window: never left to time out.
    #[tokio::test]
    async fn a_saturated_slm_serves_the_most_urgent_and_sheds_the_rest() {
        let e = Arc::new(
            Executor::start(
                fake(300, false),
                ExecutorConfig {
                    max_batch: 1,
                    max_wait_ms: 0,
                    admission_window_ms: 2_000,
                    timeout_ms: 60_000,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        // Keep the worker busy, then offer 30 calls of distinct urgencies at once: in the
        // window the worker serves about 6 of them, one at a time, always the most urgent.
        let busy = tokio::spawn({
            let e = Arc::clone(&e);
            async move { e.call(SlmRequest::SecondOpinion("busy".into()), 1.0).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let urgencies: Vec<f32> = (0..30).map(|i| ((i * 7) % 30) as f32 / 30.0).collect();
        let calls = urgencies
            .iter()
            .map(|&u| e.call(SlmRequest::SecondOpinion(format!("{u}")), u));
        let results = futures::future::join_all(calls).await;
        assert!(busy.await.unwrap().is_ok());
        let (mut served, mut shed) = (Vec::new(), Vec::new());
        for (u, r) in urgencies.iter().zip(results) {
            match r {
                Ok(_) => served.push(*u),
                Err(SlmError::Shed(Shed::Window { ms: 2_000 })) => shed.push(*u),
                other => panic!("urgency {u}: {other:?}"),
            }
        }
        assert!(
            !served.is_empty() && !shed.is_empty(),
            "{served:?} {shed:?}"
        );
        let least_served = served.iter().copied().fold(f32::INFINITY, f32::min);
        let most_shed = shed.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!(least_served > most_shed, "served {served:?}, shed {shed:?}");
    }

    /// On a slow SLM the window stretches to two model calls, so that a call waiting for a busy
    /// worker meets it at least once before it is shed.
    #[tokio::test]
    async fn the_window_lasts_at_least_two_model_calls() {
        let e = Arc::new(
            Executor::start(
                fake(200, false),
                ExecutorConfig {
                    max_batch: 1,
                    max_wait_ms: 0,
                    admission_window_ms: 10,
                    timeout_ms: 60_000,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        // One call teaches it how long a model call takes (200 ms or more).
        e.call(SlmRequest::SecondOpinion("warm".into()), 0.5)
            .await
            .unwrap();
        let busy = tokio::spawn({
            let e = Arc::clone(&e);
            async move { e.call(SlmRequest::SecondOpinion("busy".into()), 1.0).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let calls = [0.9, 0.5, 0.1].map(|u| e.call(SlmRequest::SecondOpinion(format!("{u}")), u));
        let results = futures::future::join_all(calls).await;
        assert!(busy.await.unwrap().is_ok());
        // Not shed after 10 ms: the most urgent waited for the worker and got its answer.
        assert!(results[0].is_ok(), "{results:?}");
        // The least urgent is shed, after a window of at least two model calls.
        match &results[2] {
            Err(SlmError::Shed(Shed::Window { ms })) => assert!(*ms >= 400, "{ms} ms"),
            other => panic!("{other:?}"),
        }
    }

    /// `arrival`: first come, first served; calls the SLM cannot reach in time time out
    /// (`degraded`), none is shed.
    #[tokio::test]
    async fn arrival_order_times_out_instead_of_shedding() {
        let e = Executor::start(
            fake(100, false),
            ExecutorConfig {
                max_batch: 1,
                max_wait_ms: 0,
                timeout_ms: 450,
                admission: Admission::Arrival,
                max_concurrency: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let calls = (0..10).map(|i| e.call(SlmRequest::SecondOpinion(format!("{i}")), i as f32));
        let results = futures::future::join_all(calls).await;
        let served: Vec<usize> = (0..10).filter(|&i| results[i].is_ok()).collect();
        assert!(!served.is_empty() && served.len() < 10, "{results:?}");
        // The first ones came first, whatever their urgency (the last is the most urgent).
        assert_eq!(served, (0..served.len()).collect::<Vec<_>>(), "{results:?}");
        for r in &results[served.len()..] {
            assert!(matches!(r, Err(SlmError::Timeout(450))), "{r:?}");
        }
    }

    #[tokio::test]
    async fn a_full_queue_sheds_the_least_urgent_and_replies_have_their_own_limit() {
        let e = Executor::start(
            fake(300, false),
            ExecutorConfig {
                max_batch: 1,
                max_wait_ms: 0,
                admission_window_ms: 60_000,
                timeout_ms: 120_000,
                generate_timeout_ms: 120_000,
                max_concurrency: 1,
                max_waiting_replies: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let e = Arc::new(e);
        // The worker takes the first call; one more may wait.
        let first = tokio::spawn({
            let e = Arc::clone(&e);
            async move { e.call(SlmRequest::SecondOpinion("first".into()), 0.1).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let low = tokio::spawn({
            let e = Arc::clone(&e);
            async move { e.call(SlmRequest::SecondOpinion("low".into()), 0.2).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Less urgent than the one waiting: shed at once.
        let lower = e.call(SlmRequest::SecondOpinion("lower".into()), 0.1).await;
        assert!(
            matches!(lower, Err(SlmError::Shed(Shed::QueueFull { capacity: 1 }))),
            "{lower:?}"
        );
        // More urgent: it takes the place of the waiting one, which is shed.
        let high = e.call(SlmRequest::SecondOpinion("high".into()), 0.9);
        let reply = |t: &str| SlmRequest::Generate {
            text: t.into(),
            label: "neg".into(),
        };
        let (high, r1, r2) = tokio::join!(high, e.call(reply("a"), 0.0), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            e.call(reply("b"), 0.0).await
        });
        assert!(high.is_ok(), "{high:?}");
        let low = low.await.unwrap();
        assert!(
            matches!(low, Err(SlmError::Shed(Shed::QueueFull { capacity: 1 }))),
            "{low:?}"
        );
        assert!(first.await.unwrap().is_ok());
        // One reply may wait; the second is shed at once.
        assert_eq!(r1.unwrap(), SlmResponse::Reply("neg: a".into()));
        assert!(
            matches!(r2, Err(SlmError::Shed(Shed::RepliesFull { capacity: 1 }))),
            "{r2:?}"
        );
    }
}
