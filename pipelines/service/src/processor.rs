//! One processing path for every source: a payload in, a [`Step`] out; a decision record once
//! the SLM (if asked) has answered.
//!
//! [`Processor::step`] decodes the payload, runs the fast classifier and routes the message
//! ([`Router::route`]; microseconds, synchronous). When the route asks for the small language
//! model, [`Processor::resolve`] awaits it through the executor (off the async workers, batched,
//! with a timeout), and [`Router::settle`] decides what is published: the second opinion
//! combined in, the drafted reply, or the fast label as `degraded` (the SLM failed) or
//! `over_budget` (a saturated SLM served more urgent messages).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use triage_classifier::{Model, Scratch};
use triage_core::config::Config;
use triage_core::message::{DecodeError, InputConfig, Message, decode};
use triage_core::names::metric;
use triage_router::{Answer, Budget, Outcome, Route, Router, Routing, Signals};

use crate::error::{Result, ServiceError};
use crate::record::{Members, RecordWriter, View};
use crate::slm::{SlmError, SlmRequest, SlmResponse, SlmStage};

/// The record published for every message. The service writes it with
/// [`crate::record::RecordWriter`], field for field this struct's JSON, without building one;
/// consumers (and the tests) read records back into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The input message's id.
    pub id: String,
    /// The published label: the fast label, or the label after the second opinion.
    pub label: String,
    /// Its confidence.
    pub confidence: f32,
    /// The published probability of every label (of the `[output] top_k` most probable ones,
    /// where set).
    pub probabilities: BTreeMap<String, f32>,
    /// Which route the message took.
    pub route: Route,
    /// Why.
    pub reason: String,
    /// The fast classifier's label and confidence.
    pub fast: Label,
    /// The second opinion's label and confidence, when one was asked and answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_opinion: Option<Label>,
    /// The drafted reply, for generative labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The fast classifier's model version (first 12 hex digits of its SHA-256).
    pub model_version: String,
    /// Time spent, in microseconds.
    pub timings_us: Timings,
    /// The input's other fields, unchanged.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
}

/// A label with its confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// The label.
    pub label: String,
    /// Its probability.
    pub confidence: f32,
}

/// Time spent on a message, in microseconds, written to the nanosecond (3 decimals):
/// `"classify":24.126`, not `24.125999999999998`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Timings {
    /// Analyse + vectorise + predict.
    #[serde(serialize_with = "short_us")]
    pub classify: f64,
    /// The small language model (queueing included), when it was asked.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "short_us_opt"
    )]
    pub slm: Option<f64>,
}

/// A duration in microseconds rounded to 3 decimals. `n / 1000.0` is the double nearest to
/// the decimal `n/1000`, so serde_json (ryu, shortest round-trip) prints at most 3 decimals.
fn round_us(us: f64) -> f64 {
    if us.is_finite() && us.abs() < 1e15 {
        (us * 1000.0).round() / 1000.0
    } else {
        us
    }
}

fn short_us<S: serde::Serializer>(us: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(round_us(*us))
}

fn short_us_opt<S: serde::Serializer>(
    us: &Option<f64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match us {
        Some(v) => s.serialize_some(&round_us(*v)),
        None => s.serialize_none(),
    }
}

/// Classifier + router + budget + SLM stage: the shared processing path.
pub struct Processor {
    model: Arc<Model>,
    router: Router,
    budget: Mutex<Budget>,
    slm: SlmStage,
    writer: RecordWriter,
}

/// What a published record says, beside its bytes: what sinks count, and put in headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The published label (an index into [`Processor::labels`]).
    pub label: usize,
    /// The route.
    pub route: Route,
    /// Time the fast path took, in microseconds.
    pub classify_us: f64,
}

/// A decision record, written: the JSON of a [`Decision`] and its [`Verdict`].
#[derive(Debug, Clone)]
pub struct Record {
    /// The record, one JSON object without a newline.
    pub json: Vec<u8>,
    /// What it says.
    pub verdict: Verdict,
}

/// What became of one payload on the fast path.
pub enum Step {
    /// Decided: its record was appended to the output buffer given to [`Processor::step`].
    Done(Verdict),
    /// The route asks the SLM: pass it to [`Processor::resolve`], then publish.
    Slm(Box<Pending>),
    /// Not a message: dead-letter it with the reason.
    Dead(DecodeError),
}

/// The fast classifier's reading of one message, before it is routed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Classified {
    /// Analyse + vectorise + predict, in microseconds: the message's own time, or the mean of the
    /// batch it was classified in ([`Processor::classify_all`]).
    pub classify_us: f64,
    /// The share of the message's n-grams the model has never seen (only computed when a
    /// learned deferral model needs it).
    pub unseen_share: f32,
    /// The text's length in bytes.
    pub bytes: usize,
}

/// A message waiting for the small language model.
pub struct Pending {
    id: String,
    /// The input's other fields, written as object members.
    fields: Vec<u8>,
    routing: Routing,
    fast: Vec<f32>,
    text: String,
    classify_us: f64,
}

impl Pending {
    /// The message's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Time the fast path took, in microseconds.
    pub fn classify_us(&self) -> f64 {
        self.classify_us
    }
}

impl Processor {
    /// Builds a processor, checking that the policy only names labels the model has.
    /// A learned deferral model named by the policy is read relative to `root`.
    pub fn new(model: Arc<Model>, config: &Config, slm: SlmStage, root: &Path) -> Result<Self> {
        let router = Router::from_config(
            config.router.clone(),
            config.slm.combine,
            model.labels(),
            root,
        )?;
        config.output.validate()?;
        Ok(Self {
            writer: RecordWriter::new(model.labels(), model.version(), config.output.top_k),
            model,
            router,
            budget: Mutex::new(Budget::new(config.budget.clone())?),
            slm,
        })
    }

    /// The processing path of a configuration: its router, budget and SLM stage (loaded from
    /// `[slm]`, with relative paths resolved against `root`).
    pub fn from_config(model: Arc<Model>, config: &Config, root: &Path) -> Result<Self> {
        config.input.validate().map_err(ServiceError::Config)?;
        let slm = SlmStage::load(&config.slm, &model, &config.router, root)?;
        Self::new(model, config, slm, root)
    }

    /// Whether the SLM is loaded, or why not (its routes then degrade).
    pub fn slm_status(&self) -> std::result::Result<(), &str> {
        match &self.slm.executor {
            Some(_) => Ok(()),
            None => Err(&self.slm.unavailable),
        }
    }

    /// The fast model's labels: [`Verdict::label`] indexes them.
    pub fn labels(&self) -> &[String] {
        self.model.labels()
    }

    /// The fast model's version (first 12 hex digits of its SHA-256).
    pub fn model_version(&self) -> &str {
        self.model.version()
    }

    /// A budget as configured, fresh: for a source that routes with its own (parallel replay
    /// hands one along its chunks, in input order).
    pub fn new_budget(&self) -> Budget {
        self.budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs `f` with the processor's own budget, locked once: for a source that routes a batch
    /// of classified messages in the order they came ([`Processor::route`] each).
    pub fn with_budget<R>(&self, f: impl FnOnce(&mut Budget) -> R) -> R {
        f(&mut self.budget.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Decodes a payload and, if it is a message, classifies and routes it (fast path;
    /// synchronous). `fallback_id` names a message without an id. A decided message's record
    /// is appended to `out`.
    pub fn step(
        &self,
        payload: &[u8],
        input: &InputConfig,
        fallback_id: impl FnOnce() -> String,
        scratch: &mut Scratch,
        probs: &mut Vec<f32>,
        out: &mut Vec<u8>,
    ) -> Step {
        match decode(payload, input, fallback_id) {
            Ok(msg) => self.decide(&msg, scratch, probs, out),
            Err(e) => Step::Dead(e),
        }
    }

    /// Classifies and routes a decoded message, under the processor's own budget.
    pub fn decide(
        &self,
        msg: &Message<'_>,
        scratch: &mut Scratch,
        probs: &mut Vec<f32>,
        out: &mut Vec<u8>,
    ) -> Step {
        let c = self.classify(msg, scratch, probs);
        let routing = {
            let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
            self.route(&c, probs, &mut budget)
        };
        self.finish(msg, &c, routing, probs, out)
    }

    /// The fast classifier on a message: its probabilities into `probs`.
    pub fn classify(
        &self,
        msg: &Message<'_>,
        scratch: &mut Scratch,
        probs: &mut Vec<f32>,
    ) -> Classified {
        let start = Instant::now();
        let mut c = self.classify_untimed(msg, scratch, probs);
        c.classify_us = start.elapsed().as_secs_f64() * 1e6;
        c
    }

    /// [`Processor::classify`] without its timing (`classify_us` left at 0).
    fn classify_untimed(
        &self,
        msg: &Message<'_>,
        scratch: &mut Scratch,
        probs: &mut Vec<f32>,
    ) -> Classified {
        self.model.predict_into(&msg.text, scratch, probs);
        let unseen_share = if self.router.deferral().is_some() {
            self.model.unseen_share(scratch)
        } else {
            0.0
        };
        Classified {
            classify_us: 0.0,
            unseen_share,
            bytes: msg.text.len(),
        }
    }

    /// Classifies decoded messages one after another, appending each one's probabilities
    /// ([`Processor::labels`]`.len()` floats) to `probs` in order. For a source that takes
    /// several messages at a time (replay's chunks, the Kafka loop's batches): decoded first,
    /// then classified in this one pass, decoding does not evict the model's rows between two
    /// messages. `buf` is [`Processor::classify`]'s.
    ///
    /// The pass is timed as a whole, and each message's `classify_us` is the pass's mean: a clock
    /// read costs about 50 ns here (the vDSO's or the time-stamp counter's own, alike), and one a
    /// message made a replay of 800,000 messages on one core 3.5% slower than without. The sum
    /// over the messages, and so a replay's mean classify time, is the time measured.
    pub fn classify_all<'m, 'a: 'm>(
        &self,
        messages: impl IntoIterator<Item = &'m mut (Message<'a>, Classified)>,
        scratch: &mut Scratch,
        buf: &mut Vec<f32>,
        probs: &mut Vec<f32>,
    ) {
        let start = Instant::now();
        let mut done: Vec<&'m mut Classified> = Vec::new();
        for (m, c) in messages {
            *c = self.classify_untimed(m, scratch, buf);
            probs.extend_from_slice(buf);
            done.push(c);
        }
        let mean = start.elapsed().as_secs_f64() * 1e6 / done.len().max(1) as f64;
        for c in done {
            c.classify_us = mean;
        }
    }

    /// Routes, in order and under `budget`, what [`Processor::classify_all`] classified into
    /// `probs`; `None` stands for what is not a message (and is routed as `None`).
    pub fn route_all<'m>(
        &self,
        classified: impl IntoIterator<Item = Option<&'m Classified>>,
        probs: &[f32],
        budget: &mut Budget,
    ) -> Vec<Option<Routing>> {
        let mut rows = probs.chunks_exact(self.labels().len().max(1));
        classified
            .into_iter()
            .map(|c| {
                c.map(|c| {
                    let p = rows.next().expect("one row of probabilities a message");
                    self.route(c, p, budget)
                })
            })
            .collect()
    }

    /// The route of a classified message (`probs` as [`Processor::classify`] left them),
    /// recorded in `budget`.
    pub fn route(&self, c: &Classified, probs: &[f32], budget: &mut Budget) -> Routing {
        let signals = Signals {
            probs,
            unseen_share: c.unseen_share,
            bytes: c.bytes,
        };
        self.router.route(&signals, budget)
    }

    /// A routed message: its record appended to `out` when it is decided, or the SLM call it
    /// waits for. Without an SLM (off, or not installed) a route that asks for it is settled
    /// here, at once, as `degraded`.
    pub fn finish(
        &self,
        msg: &Message<'_>,
        c: &Classified,
        routing: Routing,
        probs: &[f32],
        out: &mut Vec<u8>,
    ) -> Step {
        let fast = (routing.label, routing.confidence);
        let timings = Timings {
            classify: c.classify_us,
            slm: None,
        };
        let fields = Members::Raw(&msg.fields);
        if routing.route.uses_slm() {
            if self.slm.executor.is_some() {
                let mut fields = Vec::new();
                msg.fields.write_members(&mut fields);
                return Step::Slm(Box::new(Pending {
                    id: msg.id.to_string(),
                    fields,
                    routing,
                    fast: probs.to_vec(),
                    text: msg.text.to_string(),
                    classify_us: c.classify_us,
                }));
            }
            let outcome = self.unavailable(routing, probs);
            let verdict = self.write(&msg.id, &outcome, fast, None, timings, fields, out);
            return Step::Done(verdict);
        }
        self.writer.write(
            &View {
                id: &msg.id,
                label: routing.label,
                confidence: routing.confidence,
                probabilities: probs,
                route: routing.route,
                reason: &routing.reason,
                fast,
                second_opinion: None,
                reply: None,
                timings,
                fields,
            },
            out,
        );
        Step::Done(Verdict {
            label: routing.label,
            route: routing.route,
            classify_us: c.classify_us,
        })
    }

    /// The outcome of a route that asks for the SLM when there is none: `degraded`, with why.
    fn unavailable(&self, routing: Routing, fast: &[f32]) -> Outcome {
        metrics::counter!(metric::SLM_CALLS, "kind" => "unavailable").increment(1);
        self.router
            .settle(routing, fast, Answer::Failed(&self.slm.unavailable))
    }

    /// Writes a settled message's record to `out`.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        id: &str,
        outcome: &Outcome,
        fast: (usize, f32),
        reply: Option<&str>,
        timings: Timings,
        fields: Members<'_>,
        out: &mut Vec<u8>,
    ) -> Verdict {
        self.writer.write(
            &View {
                id,
                label: outcome.label,
                confidence: outcome.confidence,
                probabilities: &outcome.probabilities,
                route: outcome.route,
                reason: &outcome.reason,
                fast,
                second_opinion: outcome.second_opinion,
                reply,
                timings,
                fields,
            },
            out,
        );
        Verdict {
            label: outcome.label,
            route: outcome.route,
            classify_us: timings.classify,
        }
    }

    /// Asks the SLM for a pending message and settles it: the second opinion combined in, the
    /// drafted reply attached, `degraded` (the fast label stands) when the SLM is unavailable,
    /// fails or times out, or `over_budget` when it is saturated and more urgent messages took
    /// it (the executor's admission stage, ranked by [`Routing::urgency`]). Returns the written
    /// record.
    pub async fn resolve(&self, pending: Pending) -> Record {
        let Pending {
            id,
            fields,
            routing,
            fast,
            text,
            classify_us,
        } = pending;
        let fast_label = (routing.label, routing.confidence);
        let mut timings = Timings {
            classify: classify_us,
            slm: None,
        };
        let (outcome, reply) = match &self.slm.executor {
            None => (self.unavailable(routing, &fast), None),
            Some(executor) => {
                let request = match routing.route {
                    Route::Generate => SlmRequest::Generate {
                        text,
                        label: self.model.labels()[routing.label].clone(),
                    },
                    _ => SlmRequest::SecondOpinion(text),
                };
                let t0 = Instant::now();
                let answer = executor.call(request, routing.urgency).await;
                let us = t0.elapsed().as_secs_f64() * 1e6;
                timings.slm = Some(us);
                metrics::histogram!(metric::SLM_SECONDS).record(us / 1e6);
                let failure;
                let outcome = match &answer {
                    Ok(SlmResponse::Probabilities(p)) => {
                        self.router.settle(routing, &fast, Answer::SecondOpinion(p))
                    }
                    Ok(SlmResponse::Reply(_)) => self.router.settle(routing, &fast, Answer::Reply),
                    Err(SlmError::Shed(shed)) => {
                        metrics::counter!(metric::SLM_SHED, "why" => shed.kind()).increment(1);
                        self.router.settle(routing, &fast, Answer::Shed(*shed))
                    }
                    Err(e) => {
                        failure = e.to_string();
                        self.router.settle(routing, &fast, Answer::Failed(&failure))
                    }
                };
                let kind = match (&answer, outcome.route) {
                    (Err(e), _) => e.kind(),
                    (Ok(_), Route::Degraded) => "error",
                    (Ok(SlmResponse::Probabilities(_)), _) => "second_opinion",
                    (Ok(SlmResponse::Reply(_)), _) => "generate",
                };
                metrics::counter!(metric::SLM_CALLS, "kind" => kind).increment(1);
                if outcome.route == Route::Degraded {
                    tracing::debug!(id = %id, reason = %outcome.reason, "SLM call failed; publishing the fast label");
                }
                let reply = match (answer, outcome.route) {
                    (Ok(SlmResponse::Reply(reply)), Route::Generate) => Some(reply),
                    _ => None,
                };
                (outcome, reply)
            }
        };
        let mut json =
            Vec::with_capacity(256 + fields.len() + reply.as_ref().map_or(0, String::len));
        let verdict = self.write(
            &id,
            &outcome,
            fast_label,
            reply.as_deref(),
            timings,
            Members::Written(&fields),
            &mut json,
        );
        Record { json, verdict }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimals(json: &str, field: &str) -> usize {
        let at = json.find(&format!("\"{field}\":")).expect(field) + field.len() + 3;
        let num: String = json[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
            .collect();
        num.split('.').nth(1).map_or(0, str::len)
    }

    fn processor() -> Processor {
        let model = Arc::new(Model::default_model());
        let config = Config::default();
        let slm = SlmStage::disabled("off in this test");
        Processor::new(model, &config, slm, Path::new(".")).unwrap()
    }

    #[test]
    fn timings_are_written_short() {
        let d = Decision {
            id: "x".into(),
            label: "neutral".into(),
            confidence: 0.5,
            probabilities: BTreeMap::new(),
            route: Route::Fast,
            reason: "r".into(),
            fast: Label {
                label: "neutral".into(),
                confidence: 0.5,
            },
            second_opinion: None,
            reply: None,
            model_version: "0123456789ab".into(),
            timings_us: Timings {
                classify: 24.125999999999998,
                slm: Some(1.0 / 3.0 * 1000.0),
            },
            fields: Map::new(),
        };
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"classify\":24.126"), "{json}");
        assert!(decimals(&json, "classify") <= 3, "{json}");
        assert!(decimals(&json, "slm") <= 3, "{json}");
        assert!(json.contains("\"slm\":333.333"), "{json}");
        // Field names unchanged, and the record reads back.
        let back: Decision = serde_json::from_str(&json).unwrap();
        assert_eq!(back.timings_us.classify, 24.126);
        // Many values: never more than 3 decimals.
        for i in 0..10_000u32 {
            let t = Timings {
                classify: f64::from(i) * 0.0137 + 0.1,
                slm: None,
            };
            let j = serde_json::to_string(&t).unwrap();
            assert!(decimals(&j, "classify") <= 3, "{j}");
            assert!(!j.contains("slm"), "{j}");
        }
    }

    /// The written record is the JSON of the `Decision` it describes, with its numbers
    /// rounded: serde writes the same object, field for field, in the same order.
    #[test]
    fn the_written_record_is_the_decision_serde_would_write() {
        let p = processor();
        let (mut scratch, mut probs, mut out) = (Scratch::default(), Vec::new(), Vec::new());
        let payloads = [
            r#"{"id":"m-1","text":"thanks, that fixed it","user":"u\"9","n":[1, {"a": null}]}"#,
            r#"{"text":"this is awful and \u00e9 nobody \"helped\""}"#,
            r#"{"id":7,"text":"ok","z":1,"a":2,"z":3}"#,
        ];
        for (i, payload) in payloads.iter().enumerate() {
            out.clear();
            let step = p.step(
                payload.as_bytes(),
                &InputConfig::default(),
                || format!("line-{i}"),
                &mut scratch,
                &mut probs,
                &mut out,
            );
            let json = std::str::from_utf8(&out).unwrap();
            let verdict = match step {
                Step::Done(v) => v,
                Step::Slm(_) => panic!("no SLM route without budget/SLM here"),
                Step::Dead(e) => panic!("{e}"),
            };
            let d: Decision = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
            assert_eq!(d.label, p.labels()[verdict.label]);
            assert_eq!(d.route, verdict.route);
            // Serde's own writing of what was read back has the same fields, nested alike, in
            // the same order, with the same values (up to f32 precision).
            let ours: serde_json::Value = serde_json::from_str(json).unwrap();
            let theirs = serde_json::to_value(&d).unwrap();
            assert!(same_shape(&ours, &theirs), "{json}\n{theirs}");
            let order: Vec<usize> = [
                "\"id\":",
                "\"label\":",
                "\"confidence\":",
                "\"probabilities\":",
                "\"route\":",
                "\"reason\":",
                "\"fast\":",
                "\"model_version\":",
                "\"timings_us\":",
            ]
            .iter()
            .map(|k| json.find(k).unwrap())
            .collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{json}");
            // Probabilities: 4 decimals at most, the rounded fast probabilities.
            for (label, &pr) in p.labels().iter().zip(&probs) {
                assert_eq!(
                    d.probabilities[label],
                    crate::record::published_probability(pr)
                );
            }
            assert!(decimals(json, "confidence") <= 4, "{json}");
            assert!(!json.contains('\n'));
        }
        // Other fields are copied as written, in their order, a repeated key once (its last value).
        let last = std::str::from_utf8(&out).unwrap();
        assert!(last.ends_with(r#","fields":{"z":3,"a":2}}"#), "{last}");
        assert!(last.starts_with(r#"{"id":"7","#), "{last}");
    }

    /// A batch classified and routed together gets, message for message, what one at a time
    /// gets: the probability rows stay aligned across the payloads that are not messages.
    #[test]
    fn classify_all_and_route_all_match_one_message_at_a_time() {
        let p = processor();
        let k = p.labels().len();
        let payloads = [
            r#"{"id":"a","text":"thanks, that fixed it"}"#,
            "not json",
            r#"{"id":"b","text":"this is awful, nobody helped"}"#,
            r#"{"id":"c"}"#,
            r#"{"id":"d","text":"where is my order?"}"#,
            r#"{"id":"e","text":"ok"}"#,
        ];
        let input = InputConfig::default();
        let mut batch: Vec<std::result::Result<(Message<'_>, Classified), DecodeError>> = payloads
            .iter()
            .map(|x| {
                decode(x.as_bytes(), &input, || "x".into()).map(|m| (m, Classified::default()))
            })
            .collect();
        let (mut scratch, mut buf, mut rows) = (Scratch::default(), Vec::new(), Vec::new());
        p.classify_all(
            batch.iter_mut().flatten(),
            &mut scratch,
            &mut buf,
            &mut rows,
        );
        assert_eq!(rows.len(), 4 * k, "one row per message, none for the rest");
        let mut budget = p.new_budget();
        let routings = p.route_all(
            batch.iter().map(|r| r.as_ref().ok().map(|(_, c)| c)),
            &rows,
            &mut budget,
        );
        let mut alone = p.new_budget();
        let mut row = rows.chunks_exact(k);
        for (r, routing) in batch.iter().zip(&routings) {
            match (r, routing) {
                (Ok((m, c)), Some(routing)) => {
                    let mut probs = Vec::new();
                    let c1 = p.classify(m, &mut scratch, &mut probs);
                    assert_eq!(row.next().unwrap(), &probs[..], "{}", m.id);
                    assert_eq!(c.bytes, c1.bytes);
                    let one = p.route(&c1, &probs, &mut alone);
                    assert_eq!(
                        (routing.label, routing.route, routing.confidence),
                        (one.label, one.route, one.confidence),
                        "{}",
                        m.id
                    );
                }
                (Err(_), None) => {}
                _ => panic!("a message is routed, and only a message"),
            }
        }
        assert!(row.next().is_none());
    }

    /// The same keys at every level, the same strings, and numbers equal up to f32 precision.
    fn same_shape(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (a, b) {
            (V::Object(x), V::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, v)| y.get(k).is_some_and(|w| same_shape(v, w)))
            }
            (V::Array(x), V::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_shape(v, w))
            }
            (V::Number(x), V::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-6 * x.abs().max(1.0)
            }
            _ => a == b,
        }
    }
}
