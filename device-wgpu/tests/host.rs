//! The host's services come in through the options (what makes the device build for a
//! browser): the async run gives the blocking run's answers, wall times come from the clock
//! handed in, and autotune choices go to the store handed in.

use sfumato_core::{DType, Device, Graph, Tensor, TimingSource};
use sfumato_wgpu::{Clock, DeviceOptions, TuneStore, Tuning, WgpuDevice, DEFAULT_TUNE_CANDIDATES};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A clock that moves 1 ms at every reading.
#[derive(Debug, Default)]
struct StepClock(AtomicU64);

impl Clock for StepClock {
    fn now_ns(&self) -> u64 {
        self.0.fetch_add(1_000_000, Ordering::SeqCst)
    }
}

#[derive(Debug, Default)]
struct MemoryStore(Mutex<Option<String>>);

impl TuneStore for MemoryStore {
    fn load(&self) -> Option<String> {
        self.0.lock().unwrap().clone()
    }
    fn save(&self, text: &str) -> Result<(), String> {
        *self.0.lock().unwrap() = Some(text.to_string());
        Ok(())
    }
}

fn mlp() -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [8, 64]);
    let w = g.constant(Tensor::random(DType::F32, [64, 32], 1)).unwrap();
    let y = g.matmul(x, w).unwrap();
    let y = g.relu(y).unwrap();
    g.set_outputs(&[y]).unwrap();
    (g, vec![Tensor::random(DType::F32, [8, 64], 2)])
}

#[test]
fn async_run_clock_and_store_come_from_the_options() {
    let Some(_) = sfumato_wgpu::test_device() else {
        return;
    };
    let clock = Arc::new(StepClock::default());
    let store = Arc::new(MemoryStore::default());
    let mut dev = WgpuDevice::new(DeviceOptions {
        tuning: Tuning::Measure {
            candidates: DEFAULT_TUNE_CANDIDATES,
        },
        tune_store: Some(store.clone()),
        clock: clock.clone(),
        ..DeviceOptions::from_env()
    })
    .unwrap();
    let (g, inputs) = mlp();
    let blocking = dev.run(&g, &inputs).unwrap();
    let awaited = pollster::block_on(dev.run_async(&g, &inputs)).unwrap();
    assert_eq!(blocking.outputs, awaited.outputs);
    assert_eq!(
        blocking.profile.entries.len(),
        awaited.profile.entries.len()
    );
    // This device measured matmul variants, so (on lavapipe its later timestamps would not
    // bracket the dispatches) both runs give the whole run's wall time only, as a device
    // without timestamp queries does.
    for (a, b) in blocking
        .profile
        .entries
        .iter()
        .zip(&awaited.profile.entries)
    {
        assert_eq!(
            (a.source, b.source),
            (TimingSource::WholeRun, TimingSource::WholeRun)
        );
    }
    // The run's wall time is read off the clock handed in (whole milliseconds here).
    assert!(blocking.profile.wall_ns > 0 && blocking.profile.wall_ns % 1_000_000 == 0);
    assert!(clock.0.load(Ordering::SeqCst) > 0);
    // The autotuner measured the matmul and saved its choice to the store handed in.
    let saved = store
        .0
        .lock()
        .unwrap()
        .clone()
        .expect("autotune saved its choice");
    assert!(saved.contains("matmul"), "{saved}");
}

/// A run never measures: with nothing cached it takes the cost model's picks (and says which
/// classes it guessed), `tune` measures them into the store, and the next run takes the winners.
#[test]
fn a_run_never_tunes_and_tune_fills_the_cache() {
    let Some(_) = sfumato_wgpu::test_device() else {
        return;
    };
    let store = Arc::new(MemoryStore::default());
    let opts = || DeviceOptions {
        tuning: Tuning::Cached,
        tune_store: Some(store.clone()),
        ..DeviceOptions::from_env()
    };
    let mut dev = WgpuDevice::new(opts()).unwrap();
    let (g, inputs) = mlp();
    let first = dev.run(&g, &inputs).unwrap();
    assert!(
        store.0.lock().unwrap().is_none(),
        "a run measured and saved a choice"
    );
    let guessed = dev.untuned_classes();
    assert_eq!(guessed.len(), 1, "{guessed:?}");
    assert_eq!(dev.untuned_kernels(), 1);

    let report = dev.tune(&g, 2, false).unwrap();
    assert_eq!(report.len(), 1);
    let shape = &report[0];
    assert_eq!((shape.m, shape.n, shape.k, shape.batches), (8, 32, 64, 1));
    assert_eq!(shape.class, guessed[0]);
    assert_eq!(shape.times_ms.len(), 2, "{shape:?}");
    assert!(shape
        .times_ms
        .iter()
        .all(|(_, t)| *t > 0.0 && t.is_finite()));
    let saved = store
        .0
        .lock()
        .unwrap()
        .clone()
        .expect("tune saved its winner");
    assert!(saved.contains(&shape.winner), "{saved}");

    // The device that measured gives whole-run times only from now on (on lavapipe its
    // timestamps stopped bracketing the dispatches: a 1024³ matmul "took" 0.6 ms).
    let after = dev.run(&g, &inputs).unwrap();
    assert!(after
        .profile
        .entries
        .iter()
        .all(|e| e.source == TimingSource::WholeRun));

    // A new device on the same store takes the winner and guesses nothing.
    let mut dev = WgpuDevice::new(opts()).unwrap();
    let again = dev.run(&g, &inputs).unwrap();
    assert!(dev.untuned_classes().is_empty());
    if dev.has_timestamps() {
        assert!(again
            .profile
            .entries
            .iter()
            .all(|e| e.source == TimingSource::GpuTimestamp));
    }
    assert_eq!(again.profile.entries[0].kernel, shape.winner);
    assert_eq!(first.outputs.len(), again.outputs.len());
    assert!(first.outputs[0].all_close(&again.outputs[0], 1e-4, 1e-5));
    // A second tune finds the class cached and measures nothing.
    let report = dev.tune(&g, 2, false).unwrap();
    assert!(report[0].times_ms.is_empty() && report[0].winner == shape.winner);
}

/// Without timestamp queries (turned off here: lavapipe has them) a run is still one queue
/// submission, with no wait per dispatch, and its profile says that its only figure is the
/// whole run's wall time: the table shows no per-kernel time, the trace one event for the run.
/// With them, one submission too, every dispatch timed by the GPU.
#[test]
fn a_run_is_one_submission_with_or_without_timestamps() {
    let Some(first) = sfumato_wgpu::test_device() else {
        return;
    };
    let adapter_has_them = first.has_timestamps();
    drop(first);
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [8, 16]);
    let w = g.constant(Tensor::random(DType::F32, [16, 4], 1)).unwrap();
    let y = g.matmul(x, w).unwrap();
    let y = g.relu(y).unwrap();
    let y = g.softmax(y, -1).unwrap();
    g.set_outputs(&[y]).unwrap();
    let inputs = [Tensor::random(DType::F32, [8, 16], 2)];
    for timestamps in [false, true] {
        if timestamps && !adapter_has_them {
            continue;
        }
        let mut dev = WgpuDevice::new(DeviceOptions {
            tuning: Tuning::Off,
            tune_store: None,
            timestamps,
            ..DeviceOptions::from_env()
        })
        .unwrap();
        assert_eq!(dev.has_timestamps(), timestamps);
        // Unfused: three dispatches (matmul, relu, softmax).
        dev.set_fusion(false);
        let before = dev.submissions();
        let out = dev.run(&g, &inputs).unwrap();
        let p = &out.profile;
        assert_eq!(p.entries.len(), 3, "{p:?}");
        assert_eq!(
            dev.submissions() - before,
            1,
            "timestamps {timestamps}: a run of {} dispatches made {} submissions",
            p.entries.len(),
            dev.submissions() - before
        );
        let want = if timestamps {
            TimingSource::GpuTimestamp
        } else {
            TimingSource::WholeRun
        };
        assert_eq!(p.source(), Some(want));
        assert!(p.entries.iter().all(|e| e.source == want), "{p:?}");
        assert!(p.wall_ns > 0);
        let table = p.table();
        let trace = p.chrome_trace();
        let events = trace["traceEvents"].as_array().unwrap();
        assert_eq!(trace["otherData"]["timing_source"], format!("{want:?}"));
        if timestamps {
            assert!(p.per_entry_times() && p.kernel_ns() > 0, "{p:?}");
            assert_eq!(events.len(), 3);
            assert!(table.contains("(GpuTimestamp)"), "{table}");
        } else {
            // No time is made up per entry: they are 0, and shown as "-".
            assert!(!p.per_entry_times());
            assert!(
                p.entries
                    .iter()
                    .all(|e| e.duration_ns == 0 && e.start_ns == 0),
                "{p:?}"
            );
            assert!(table.contains("no per-kernel times (WholeRun"), "{table}");
            assert_eq!(events.len(), 1, "{trace}");
            assert_eq!(events[0]["args"]["kernels"].as_array().unwrap().len(), 3);
            assert_eq!(events[0]["dur"], p.wall_ns as f64 / 1000.0);
            assert_eq!(events[0]["args"]["source"], "WholeRun");
        }
        // The awaited run is one submission too.
        let before = dev.submissions();
        let awaited = pollster::block_on(dev.run_async(&g, &inputs)).unwrap();
        assert_eq!(dev.submissions() - before, 1);
        assert_eq!(awaited.profile.source(), Some(want));
        assert_eq!(awaited.outputs, out.outputs);
    }
}
