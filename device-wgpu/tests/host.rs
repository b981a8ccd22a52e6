//! The host's services come in through the options (what makes the device build for a
//! browser): the async run gives the blocking run's answers, wall times come from the clock
//! handed in, and autotune choices go to the store handed in.

use sfumato_core::{DType, Device, Graph, Tensor, TimingSource};
use sfumato_wgpu::{Clock, DeviceOptions, TuneStore, WgpuDevice};
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
        autotune: true,
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
    // With timestamp queries both runs are timed by the GPU; without, the blocking run times
    // each dispatch on the host clock and the awaited one says it is untimed.
    for (a, b) in blocking
        .profile
        .entries
        .iter()
        .zip(&awaited.profile.entries)
    {
        let want = if dev.has_timestamps() {
            (TimingSource::GpuTimestamp, TimingSource::GpuTimestamp)
        } else {
            (TimingSource::WallClock, TimingSource::Untimed)
        };
        assert_eq!((a.source, b.source), want);
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
