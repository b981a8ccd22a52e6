//! Triton's dynamic batcher, per model: when one of the model's instances is free, the first
//! request in its queue starts a batch, and requests that arrive within the model's
//! `max_queue_delay` join it until it reaches the largest preferred size (or
//! `max_batch_size`). The batch is stacked along dim 0, padded with zero rows up to the next
//! size the model is built at, run on the device's queue, and split back.
//!
//! The queue is bounded (`max_queue_size`): a request that finds it full is answered
//! "unavailable" at once (back-pressure) rather than queued without bound. A request past its
//! timeout is answered and dropped before its batch runs; one whose client went away is dropped.

use crate::metrics::Metrics;
use crate::model::{stack, unstack, ModelCore};
use crate::ServeError;
use sfumato_core::Tensor;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A request waiting in a model's queue.
pub struct Pending {
    /// In the model's input order.
    pub inputs: Vec<Tensor>,
    /// Its rows (dim 0) where the model batches; 1 otherwise.
    pub rows: usize,
    pub arrived: Instant,
    pub deadline: Option<Instant>,
    /// Its outputs, in the model's output order.
    pub reply: oneshot::Sender<Result<Vec<Tensor>, ServeError>>,
}

/// Start the model's batcher; requests go in through the returned sender (bounded by the
/// model's `max_queue_size`). The batcher ends when every sender is dropped and the queue is
/// empty.
pub fn spawn(core: Arc<ModelCore>, metrics: Arc<Metrics>) -> mpsc::Sender<Pending> {
    let (tx, rx) = mpsc::channel(core.config.max_queue_size);
    tokio::spawn(run(core, metrics, rx));
    tx
}

async fn run(core: Arc<ModelCore>, metrics: Arc<Metrics>, mut rx: mpsc::Receiver<Pending>) {
    let instances = Arc::new(Semaphore::new(core.config.instance_count));
    let c = &core.config;
    let (delay, target) = match &c.dynamic_batching {
        Some(d) => (
            d.max_queue_delay,
            d.preferred.last().copied().unwrap_or(c.max_batch_size),
        ),
        None => (Duration::ZERO, 0),
    };
    let labels = [c.name.as_str(), core.version.as_str()];
    let mut carry: Option<Pending> = None;
    loop {
        // A batch forms only when an instance is free to run it, so requests that arrive
        // while the device is busy join the next batch.
        let Ok(permit) = instances.clone().acquire_owned().await else {
            return;
        };
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let until = first.arrived + delay;
        let mut rows = first.rows;
        let mut batch = vec![first];
        while rows < target {
            let next = match rx.try_recv() {
                Ok(p) => Some(p),
                Err(mpsc::error::TryRecvError::Empty) => tokio::time::timeout_at(until, rx.recv())
                    .await
                    .ok()
                    .flatten(),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            let Some(p) = next else { break };
            if rows + p.rows > c.max_batch_size {
                carry = Some(p);
                break;
            }
            rows += p.rows;
            batch.push(p);
        }
        metrics
            .pending
            .with_label_values(&labels)
            .sub(batch.len() as i64);
        let now = Instant::now();
        batch.retain(|p| !p.reply.is_closed());
        let (expired, live): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|p| p.deadline.is_some_and(|d| d <= now));
        for p in expired {
            let waited = now - p.arrived;
            let _ = p.reply.send(Err(ServeError::timeout(format!(
                "{}: the request timed out after {:.1} ms in the queue",
                core.what(),
                waited.as_secs_f64() * 1e3
            ))));
        }
        if live.is_empty() {
            continue;
        }
        tokio::spawn(execute(core.clone(), metrics.clone(), live, permit));
    }
}

async fn execute(
    core: Arc<ModelCore>,
    metrics: Arc<Metrics>,
    batch: Vec<Pending>,
    _instance: OwnedSemaphorePermit,
) {
    let labels = [core.config.name.as_str(), core.version.as_str()];
    let started = Instant::now();
    for p in &batch {
        metrics.queued(labels[0], labels[1], started - p.arrived);
    }
    let rows: Vec<usize> = batch.iter().map(|p| p.rows).collect();
    let total: usize = rows.iter().sum();
    let result = run_batch(&core, &metrics, &batch, &rows, total).await;
    match result {
        Ok(per_request) => {
            for (p, outs) in batch.into_iter().zip(per_request) {
                let _ = p.reply.send(Ok(outs));
            }
        }
        Err(e) => {
            for p in batch {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}

async fn run_batch(
    core: &Arc<ModelCore>,
    metrics: &Metrics,
    batch: &[Pending],
    rows: &[usize],
    total: usize,
) -> Result<Vec<Vec<Tensor>>, ServeError> {
    let labels = [core.config.name.as_str(), core.version.as_str()];
    let batched = core.config.max_batch_size > 0;
    let bucket = if batched {
        core.buckets
            .iter()
            .copied()
            .find(|&b| b >= total)
            .unwrap_or(total)
    } else {
        1
    };
    let c2 = core.clone();
    let graph = tokio::task::spawn_blocking(move || c2.graph(bucket))
        .await
        .map_err(|e| ServeError::internal(format!("building a batch: {e}")))??;
    let stacking = Instant::now();
    let inputs = if batched {
        (0..core.inputs.len())
            .map(|i| {
                let parts: Vec<&Tensor> = batch.iter().map(|p| &p.inputs[i]).collect();
                stack(&parts, bucket)
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        batch[0].inputs.clone()
    };
    let input = stacking.elapsed();
    let what = format!("{} (a batch of {total} rows at size {bucket})", core.what());
    let (outs, took) = core.engine.run(graph, inputs, what).await?;
    let mut x = crate::stats::Execution {
        rows: total,
        requests: batch.len(),
        input,
        infer: took,
        output: Duration::ZERO,
    };
    let per_request = if batched {
        let splitting = Instant::now();
        let split = split_outputs(&outs, rows, batch.len());
        x.output = splitting.elapsed();
        split
    } else {
        Ok(vec![outs])
    };
    metrics.executed(labels[0], labels[1], x);
    per_request
}

/// A batch's outputs split back into each request's rows.
fn split_outputs(
    outs: &[Tensor],
    rows: &[usize],
    requests: usize,
) -> Result<Vec<Vec<Tensor>>, ServeError> {
    let mut per_request: Vec<Vec<Tensor>> = vec![Vec::with_capacity(outs.len()); requests];
    for o in outs {
        for (r, part) in unstack(o, rows)?.into_iter().enumerate() {
            per_request[r].push(part);
        }
    }
    Ok(per_request)
}
