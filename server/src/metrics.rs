//! Prometheus metrics at `/metrics`, under the names and labels Triton uses where they apply
//! (`nv_inference_*`, labelled by model and version), and the batch sizes the batcher formed.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

pub struct Metrics {
    registry: Registry,
    /// Requests answered, by model and version (Triton: nv_inference_request_success).
    pub success: IntCounterVec,
    /// Requests that failed, with Triton's reason label (REJECTED: queue full or not ready;
    /// CANCELED: timed out; BACKEND: the device failed; OTHER: a bad request).
    pub failure: IntCounterVec,
    /// Inferences: the rows of every request (nv_inference_count).
    pub inferences: IntCounterVec,
    /// Device executions: batches run (nv_inference_exec_count). With batching, fewer than
    /// inferences.
    pub executions: IntCounterVec,
    /// Cumulative request time, arrival to answer, in microseconds.
    pub request_us: IntCounterVec,
    /// Cumulative time requests waited in the queue, in microseconds.
    pub queue_us: IntCounterVec,
    /// Cumulative device time of the batches, in microseconds.
    pub compute_us: IntCounterVec,
    /// Requests waiting in a model's queue now.
    pub pending: IntGaugeVec,
    /// The sizes of the batches run (rows, before padding to a built size).
    pub batch_size: HistogramVec,
    /// 1 where a model is ready, 0 where it is loaded but failed or unloaded.
    pub ready: IntGaugeVec,
    /// The same events per model version for the statistics extension (`/stats`), counted by
    /// the same calls ([`Metrics::answered`], [`Metrics::queued`], [`Metrics::executed`]).
    pub stats: crate::stats::Stats,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    r.register(Box::new(c.clone()))
        .expect("a metric registered once");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        let r = Registry::new();
        let mv = &["model", "version"];
        let pending = IntGaugeVec::new(
            Opts::new(
                "nv_inference_pending_request_count",
                "Requests waiting in the model's queue",
            ),
            mv,
        )
        .expect("a valid metric");
        r.register(Box::new(pending.clone()))
            .expect("registered once");
        let ready = IntGaugeVec::new(
            Opts::new("sfumato_model_ready", "1 if the model is ready"),
            &["model"],
        )
        .expect("a valid metric");
        r.register(Box::new(ready.clone()))
            .expect("registered once");
        let batch_size = HistogramVec::new(
            HistogramOpts::new("sfumato_inference_batch_size", "Rows per device execution")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            mv,
        )
        .expect("a valid metric");
        r.register(Box::new(batch_size.clone()))
            .expect("registered once");
        Metrics {
            success: counter(
                &r,
                "nv_inference_request_success",
                "Successful inference requests",
                mv,
            ),
            failure: counter(
                &r,
                "nv_inference_request_failure",
                "Failed inference requests",
                &["model", "version", "reason"],
            ),
            inferences: counter(
                &r,
                "nv_inference_count",
                "Inferences performed (batch rows)",
                mv,
            ),
            executions: counter(
                &r,
                "nv_inference_exec_count",
                "Model executions (batches)",
                mv,
            ),
            request_us: counter(
                &r,
                "nv_inference_request_duration_us",
                "Cumulative inference request duration in microseconds",
                mv,
            ),
            queue_us: counter(
                &r,
                "nv_inference_queue_duration_us",
                "Cumulative inference queuing duration in microseconds",
                mv,
            ),
            compute_us: counter(
                &r,
                "nv_inference_compute_infer_duration_us",
                "Cumulative compute inference duration in microseconds",
                mv,
            ),
            pending,
            batch_size,
            ready,
            stats: Default::default(),
            registry: r,
        }
    }
}

impl Metrics {
    /// A request of `model` `version` answered after `took` (arrival to answer): `Ok`, or the
    /// failure with its reason label (`ServeError::metric_reason`). Counted in Prometheus's
    /// metrics and the statistics extension's both.
    pub fn answered(&self, model: &str, version: &str, took: Duration, failure: Option<&str>) {
        match failure {
            None => {
                self.success.with_label_values(&[model, version]).inc();
                self.request_us
                    .with_label_values(&[model, version])
                    .inc_by(took.as_micros() as u64);
                self.stats.success(model, version, took);
            }
            Some(reason) => {
                self.failure
                    .with_label_values(&[model, version, reason])
                    .inc();
                self.stats.fail(model, version, took);
            }
        }
    }

    /// A request that waited `waited` in the queue before its batch ran.
    pub fn queued(&self, model: &str, version: &str, waited: Duration) {
        self.queue_us
            .with_label_values(&[model, version])
            .inc_by(waited.as_micros() as u64);
        self.stats.queued(model, version, waited);
    }

    /// One device execution (a batch of `x.rows` rows from `x.requests` requests). Inferences
    /// are the rows that ran, as Triton counts them, not those that were queued.
    pub fn executed(&self, model: &str, version: &str, x: crate::stats::Execution) {
        let labels = [model, version];
        self.compute_us
            .with_label_values(&labels)
            .inc_by(x.infer.as_micros() as u64);
        self.executions.with_label_values(&labels).inc();
        self.inferences
            .with_label_values(&labels)
            .inc_by(x.rows as u64);
        self.batch_size
            .with_label_values(&labels)
            .observe(x.rows as f64);
        self.stats.executed(model, version, x);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
